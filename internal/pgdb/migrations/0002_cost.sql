-- Money: what each request cost, fixed when it was recorded, in
-- picodollars (1e-12 USD; usage.Money). A row's cost is the sum of its
-- requests'.
ALTER TABLE usage_hourly ADD COLUMN cost_pusd bigint NOT NULL DEFAULT 0;
ALTER TABLE request_log ADD COLUMN cost_pusd bigint NOT NULL DEFAULT 0;
