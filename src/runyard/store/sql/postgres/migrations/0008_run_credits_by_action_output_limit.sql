-- A run's credits by action beside their total (JSON text {"action": amount}), kept up to
-- date by the same trigger as the total: a run read carries its breakdown without a
-- query of its credit rows.
ALTER TABLE runs ADD COLUMN credits_by_action TEXT;
-- max_results enforced: how many outputs the run's current iteration stored, and whether
-- an emit was refused because the limit was reached (both reset by a continue).
ALTER TABLE runs ADD COLUMN output_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN truncated BOOLEAN NOT NULL DEFAULT FALSE;

CREATE OR REPLACE FUNCTION runyard_credits_sum() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE runs SET credits = credits + NEW.amount,
    credits_by_action = (coalesce(credits_by_action, '{}')::jsonb || jsonb_build_object(
      NEW.action,
      coalesce((coalesce(credits_by_action, '{}')::jsonb ->> NEW.action)::double precision, 0)
        + NEW.amount))::text
  WHERE id = NEW.run_id;
  RETURN NEW;
END $$;

UPDATE runs r SET credits_by_action = c.by_action
FROM (SELECT run_id, json_object_agg(action, total)::text AS by_action
      FROM (SELECT run_id, action, sum(amount) AS total FROM credits GROUP BY run_id, action) a
      GROUP BY run_id) c
WHERE r.id = c.run_id;

UPDATE runs r SET output_count = (SELECT count(*) FROM outputs o
                                  WHERE o.run_id = r.id AND o.iteration = r.iteration)
WHERE r.max_results IS NOT NULL;
