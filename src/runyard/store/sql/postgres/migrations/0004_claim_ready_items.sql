-- Claiming costs what the batch costs, not what the backlog holds. An item is claimable
-- when it is open, unowned and not parked; what used to be read from its run at every
-- claim (is the run paused?) and from the clock (is the item due?) is kept on the item:
--   parked = 0  ready: claimable now (in items_ready or items_ready_keyed, best first);
--   parked = 1  until due_at: a sleep, an event wait, a retry backoff, a recovery's
--               jitter, a delayed run (in items_parked, by due time; a claim first moves
--               the items that came due to parked = 0, see unpark_due);
--   parked = 2  its run is paused (resume moves it back).
-- The claim then walks one index per workflow reference (and flow-control key) in claim
-- order and stops after the batch, with no join to runs and no sort.
ALTER TABLE items ADD COLUMN parked SMALLINT NOT NULL DEFAULT 0;
UPDATE items i SET parked = CASE WHEN r.status = 'PAUSED' AND i.kind <> 'hook' THEN 2 ELSE 1 END
FROM runs r
WHERE r.id = i.run_id AND i.owner IS NULL AND i.state IN ('queued', 'processing')
  AND i.kind <> 'map'
  AND ((r.status = 'PAUSED' AND i.kind <> 'hook') OR i.due_at > runyard_now());
DROP INDEX IF EXISTS items_claim;
CREATE INDEX items_ready ON items (wref, priority DESC, due_at)
  WHERE parked = 0 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map'
    AND flow_key IS NULL;
CREATE INDEX items_ready_keyed ON items (wref, flow_key, priority DESC, due_at)
  WHERE parked = 0 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map'
    AND flow_key IS NOT NULL;
CREATE INDEX items_parked ON items (due_at)
  WHERE parked = 1 AND owner IS NULL AND state IN ('queued', 'processing') AND kind <> 'map';
-- Is this the run's last open input? One probe, not a count of its inputs (a run of
-- 10,000 inputs read all of them at each outcome).
CREATE INDEX items_open_inputs ON items (run_id)
  WHERE kind = 'input' AND state IN ('queued', 'processing');
