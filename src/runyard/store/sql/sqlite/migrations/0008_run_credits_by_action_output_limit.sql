-- A run's credits by action beside their total (JSON text {"action": amount}), kept up to
-- date by the same trigger as the total: a run read carries its breakdown without a
-- query of its credit rows.
ALTER TABLE runs ADD COLUMN credits_by_action TEXT;
-- max_results enforced: how many outputs the run's current iteration stored, and whether
-- an emit was refused because the limit was reached (both reset by a continue).
ALTER TABLE runs ADD COLUMN output_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0;

DROP TRIGGER credits_sum;
CREATE TRIGGER credits_sum AFTER INSERT ON credits BEGIN
  UPDATE runs SET credits = credits + NEW.amount,
    credits_by_action = json_patch(coalesce(credits_by_action, '{}'), json_object(
      NEW.action,
      coalesce((SELECT value FROM json_each(coalesce(credits_by_action, '{}'))
                WHERE key = NEW.action), 0) + NEW.amount))
  WHERE id = NEW.run_id;
END;

UPDATE runs SET credits_by_action = (
  SELECT json_group_object(action, total)
  FROM (SELECT action, sum(amount) AS total FROM credits WHERE credits.run_id = runs.id
        GROUP BY action))
WHERE id IN (SELECT run_id FROM credits);

UPDATE runs SET output_count = (SELECT count(*) FROM outputs o
                                WHERE o.run_id = runs.id AND o.iteration = runs.iteration)
WHERE max_results IS NOT NULL;
