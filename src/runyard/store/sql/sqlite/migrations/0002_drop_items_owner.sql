-- items_owner served no query: every write that names an owner also names the item's
-- key (run_id, idx) and is found through the primary key. It cost an index entry on every
-- claim, and on PostgreSQL the planner took it to scan every item a worker owns when a
-- statement joined a handful of items given as JSON rows.
DROP INDEX IF EXISTS items_owner;
