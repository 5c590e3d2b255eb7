-- obol's system of record: API keys and the usage ledger.
-- Times are timestamptz, in UTC; token counts are bigint.

-- The API keys made at run time (the configuration's are not here). Only
-- the SHA-256 of a secret is kept.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,            -- key_…, also inside the secret
    sha256       text NOT NULL UNIQUE,        -- hex SHA-256 of the secret
    prefix       text NOT NULL,               -- the secret's start, for people
    name         text NOT NULL DEFAULT '',
    tier         text NOT NULL,
    models       text[] NOT NULL DEFAULT '{}', -- empty: every model
    scopes       text[] NOT NULL DEFAULT '{}',
    limits       jsonb NOT NULL DEFAULT '{}',  -- {"rpm":…,"tpm":…,"tpd":…}: the key's own
    metadata     jsonb NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);

-- Every change to a key, in order: each replica reads what came after the
-- last it saw (within a second) and forgets those keys from its cache.
CREATE TABLE api_key_changes (
    seq    bigserial PRIMARY KEY,
    key_id text NOT NULL,
    at     timestamptz NOT NULL DEFAULT now()
);

-- A tombstone of a key whose create failed and was undone: a create of
-- the same id arriving late is refused.
CREATE TABLE api_key_tombstones (
    id text PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now()
);

-- The ledger: one row per key, model and UTC hour. A billing query sums
-- these, e.g. a month of one key:
--   SELECT model, sum(prompt_tokens), sum(completion_tokens), sum(requests)
--   FROM usage_hourly WHERE key_id = 'key_…'
--     AND hour >= '2026-11-01' AND hour < '2026-12-01' GROUP BY model;
CREATE TABLE usage_hourly (
    key_id               text NOT NULL,
    model                text NOT NULL,
    hour                 timestamptz NOT NULL,  -- the start of the UTC hour
    prompt_tokens        bigint NOT NULL DEFAULT 0, -- cached ones included
    cached_prompt_tokens bigint NOT NULL DEFAULT 0,
    completion_tokens    bigint NOT NULL DEFAULT 0, -- reasoning ones included
    reasoning_tokens     bigint NOT NULL DEFAULT 0,
    requests             bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, model, hour)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

-- The request ids the ledger holds: a request is recorded exactly once,
-- its id inserted in the same statement as its bucket's update. Kept 7
-- days from when they were written, far past any retry or spool replay.
CREATE TABLE usage_request_ids (
    request_id text PRIMARY KEY,
    at         timestamptz NOT NULL -- when it was written
);
CREATE INDEX usage_request_ids_at ON usage_request_ids (at);

-- The optional per-request log (postgres.request_log_days), one row per
-- request, pruned by day.
CREATE TABLE request_log (
    request_id           text NOT NULL,
    at                   timestamptz NOT NULL,
    key_id               text NOT NULL,
    model                text NOT NULL,
    prompt_tokens        bigint NOT NULL,
    cached_prompt_tokens bigint NOT NULL,
    completion_tokens    bigint NOT NULL,
    reasoning_tokens     bigint NOT NULL,
    status               int NOT NULL,     -- the HTTP status answered
    stream_outcome       text NOT NULL DEFAULT '', -- completed, client_gone, upstream_error, shutdown
    counted              boolean NOT NULL DEFAULT false -- the gateway's count, the backend reported none
);
CREATE INDEX request_log_at ON request_log (at);
CREATE INDEX request_log_key_at ON request_log (key_id, at);
