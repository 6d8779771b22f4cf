-- Callbacks (issue 21 item 1). A run's callback: where it reports, which of its outputs
-- were put in a message so far (output_cursor: the last outputs.id batched), and whether
-- its final messages are still to write (open). Deliveries are the messages, one row
-- each (message_id is the webhook-id, stable across its attempts), claimed with a lease
-- like items; every attempt is kept in delivery_attempts. webhook_secrets: the
-- deployment's signing secrets (whsec_...), a retired one valid until expires_at.
CREATE TABLE run_callbacks (
  run_id TEXT PRIMARY KEY,
  url TEXT NOT NULL,
  headers TEXT NOT NULL DEFAULT '{}',
  output_cursor BIGINT NOT NULL DEFAULT 0,
  open BOOLEAN NOT NULL DEFAULT TRUE,
  stopped BOOLEAN NOT NULL DEFAULT FALSE,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE INDEX run_callbacks_open ON run_callbacks (run_id) WHERE open;

DROP TABLE deliveries;
CREATE TABLE deliveries (
  id BIGSERIAL PRIMARY KEY,
  message_id TEXT NOT NULL UNIQUE,
  run_id TEXT NOT NULL,
  item_idx INTEGER NOT NULL DEFAULT 0,
  url TEXT NOT NULL,
  headers TEXT NOT NULL DEFAULT '{}',
  kind TEXT NOT NULL,
  body TEXT NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending',
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  last_status INTEGER,
  last_error TEXT,
  owner TEXT,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  delivered_at DOUBLE PRECISION
);
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_run ON deliveries (run_id, id);

CREATE TABLE delivery_attempts (
  id BIGSERIAL PRIMARY KEY,
  delivery_id BIGINT NOT NULL,
  run_id TEXT NOT NULL,
  attempt INTEGER NOT NULL,
  status_code INTEGER,
  latency_ms DOUBLE PRECISION,
  error TEXT,
  next_attempt_at DOUBLE PRECISION,
  at DOUBLE PRECISION NOT NULL DEFAULT runyard_now()
);
CREATE INDEX delivery_attempts_run ON delivery_attempts (run_id, delivery_id, id);

CREATE TABLE webhook_secrets (
  id BIGSERIAL PRIMARY KEY,
  secret TEXT NOT NULL,
  created_at DOUBLE PRECISION NOT NULL DEFAULT runyard_now(),
  expires_at DOUBLE PRECISION
);
