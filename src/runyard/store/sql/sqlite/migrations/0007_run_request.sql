-- The canonical form of the request that created a run (JSON text: its workflow, the
-- version asked for, mode, options, and a SHA-256 of its inputs with their custom_data),
-- so that a trigger reusing its run id can be told apart: the same request answers with
-- the run, another is refused naming what differs. NULL for runs created before (and
-- for forks): those are not compared.
ALTER TABLE runs ADD COLUMN request TEXT;
