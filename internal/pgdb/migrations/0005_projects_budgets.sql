-- Projects made at run time (the configuration's are not here): limits
-- and a monthly budget over all their keys.
CREATE TABLE projects (
    id         text PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    limits     jsonb NOT NULL DEFAULT '{}', -- {"rpm","tpm","tpd","concurrency"}; absent: unlimited
    budget     jsonb,                       -- {"monthly": USD, "alert_at": [fractions]}; null: none
    metadata   jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL
);

-- A key's own monthly budget.
ALTER TABLE api_keys ADD COLUMN budget jsonb;

-- The ledger carries the project a key belonged to when the request
-- arrived ('' for none), so that a project's spend is its rows' sum:
--   SELECT sum(cost_pusd) FROM usage_hourly WHERE project = 'acme'
--     AND hour >= '2026-11-01' AND hour < '2026-12-01';
ALTER TABLE usage_hourly ADD COLUMN project text NOT NULL DEFAULT '';
ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_pkey;
ALTER TABLE usage_hourly ADD PRIMARY KEY (key_id, project, model, kind, hour);
CREATE INDEX usage_hourly_project_hour ON usage_hourly (project, hour) WHERE project <> '';
ALTER TABLE request_log ADD COLUMN project text NOT NULL DEFAULT '';

-- Budget alerts claimed for delivery: one row per (subject, month,
-- threshold), inserted by the replica that sends it, so that each is
-- sent once across replicas; one whose claimant died before it finished
-- is claimed again by another replica after a while.
CREATE TABLE alert_deliveries (
    subject      text NOT NULL,  -- project:<id> or key:<id>
    period       text NOT NULL,  -- YYYY-MM
    threshold    text NOT NULL,  -- the fraction, as configured
    event_id     text NOT NULL UNIQUE,
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    attempts     int NOT NULL DEFAULT 0,   -- 0 until the claimant finished trying
    alert        jsonb NOT NULL,           -- what is sent, so that another replica can send it
    PRIMARY KEY (subject, period, threshold)
);
CREATE INDEX alert_deliveries_unsent ON alert_deliveries (claimed_at) WHERE delivered_at IS NULL AND attempts = 0;
