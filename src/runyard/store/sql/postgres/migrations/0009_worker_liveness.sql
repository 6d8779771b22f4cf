-- What proves a worker dead before its leases expire (fast recovery): the host (name,
-- boot and pid namespace) and start time of its process, so that a worker on the same
-- host sees its pid gone; on PostgreSQL the session advisory lock it held when it
-- registered, and when it took it (a lock lost to a server restart proves nothing).
ALTER TABLE workers ADD COLUMN host_id TEXT;
ALTER TABLE workers ADD COLUMN proc_started DOUBLE PRECISION;
ALTER TABLE workers ADD COLUMN lock_key BIGINT;
ALTER TABLE workers ADD COLUMN lock_at DOUBLE PRECISION;
CREATE INDEX workers_live ON workers (host_id) WHERE stopped_at IS NULL;
