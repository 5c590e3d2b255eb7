-- Budget alerts are an outbox: each row is driven by whichever replica
-- leases it (next_at moved past now) until every webhook took it or its
-- retry window ended.
ALTER TABLE alert_deliveries
    ADD COLUMN state        text NOT NULL DEFAULT 'pending', -- pending, delivered, failed
    ADD COLUMN next_at      timestamptz NOT NULL DEFAULT now(), -- the next attempt, or the lease's end
    ADD COLUMN last_error   text NOT NULL DEFAULT '',
    ADD COLUMN delivered_to text[] NOT NULL DEFAULT '{}',       -- webhooks (URLs) that took it
    ADD COLUMN failed_at    timestamptz;
UPDATE alert_deliveries SET state = 'delivered' WHERE delivered_at IS NOT NULL;
UPDATE alert_deliveries SET state = 'failed', failed_at = now() WHERE delivered_at IS NULL AND attempts > 0;
DROP INDEX alert_deliveries_unsent;
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_at) WHERE state = 'pending';
CREATE INDEX alert_deliveries_claimed ON alert_deliveries (claimed_at);
