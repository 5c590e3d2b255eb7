package usage

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Postgres is the ledger in PostgreSQL, the system of record of several
// replicas: a row per key, model and UTC hour (usage_hourly), each
// request once by its id (usage_request_ids, in the same statement), and
// the optional per-request log (request_log). internal/pgdb keeps the
// schema.
type Postgres struct {
	pool    *pgxpool.Pool
	logDays int
	pruned  atomic.Int64 // unix hour of the last pruning
}

// requestIDDays is how long request ids are kept for exactly-once
// writes: far past any retry or spool replay.
const requestIDDays = 7

// NewPostgres writes the ledger to pool. logDays is how long the
// per-request log keeps a request; 0 keeps no log.
func NewPostgres(pool *pgxpool.Pool, logDays int) *Postgres {
	return &Postgres{pool: pool, logDays: logDays}
}

// writeSQL adds a batch in one statement, so in one transaction: the new
// request ids are inserted, and only the records whose ids were new are
// logged and summed into their hours. A batch that repeats an id (a spool
// replayed twice, a retry after a timeout) adds nothing for it.
const writeSQL = `
WITH input AS (
  SELECT DISTINCT ON (request_id) *
  FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[], $6::bigint[], $7::bigint[],
              $8::bigint[], $9::int[], $10::text[], $11::boolean[], $13::bigint[], $14::text[], $15::text[], $16::text[],
              $17::bigint[], $18::bigint[], $19::text[], $20::text[], $21::bigint[], $22::bigint[], $23::boolean[])
       AS t(request_id, key_id, model, at, prompt, cached, completion, reasoning, status, outcome, counted, cost, kind, project, api,
            write5m, write1h, backend, error_code, ttft_us, duration_us, log_only)
),
new AS (
  INSERT INTO usage_request_ids (request_id, at) SELECT request_id, now() FROM input
  ON CONFLICT DO NOTHING RETURNING request_id
),
logged AS (
  INSERT INTO request_log (request_id, at, key_id, model, prompt_tokens, cached_prompt_tokens, completion_tokens,
                           reasoning_tokens, status, stream_outcome, counted, cost_pusd, kind, project, api,
                           cache_write_5m_tokens, cache_write_1h_tokens, backend, error_code, ttft_us, duration_us)
  SELECT request_id, at, key_id, model, prompt, cached, completion, reasoning, status, outcome, counted, cost, kind, project, api,
         write5m, write1h, backend, error_code, ttft_us, duration_us
  FROM input JOIN new USING (request_id) WHERE $12
)
INSERT INTO usage_hourly AS u (key_id, project, model, kind, hour, prompt_tokens, cached_prompt_tokens, completion_tokens,
                               reasoning_tokens, requests, cost_pusd, cache_write_5m_tokens, cache_write_1h_tokens)
SELECT key_id, project, model, kind, date_trunc('hour', at), sum(prompt), sum(cached), sum(completion), sum(reasoning), count(*), sum(cost),
       sum(write5m), sum(write1h)
FROM input JOIN new USING (request_id) WHERE NOT log_only
GROUP BY key_id, project, model, kind, date_trunc('hour', at)
ON CONFLICT (key_id, project, model, kind, hour) DO UPDATE SET
  prompt_tokens = u.prompt_tokens + excluded.prompt_tokens,
  cached_prompt_tokens = u.cached_prompt_tokens + excluded.cached_prompt_tokens,
  completion_tokens = u.completion_tokens + excluded.completion_tokens,
  reasoning_tokens = u.reasoning_tokens + excluded.reasoning_tokens,
  requests = u.requests + excluded.requests,
  cost_pusd = u.cost_pusd + excluded.cost_pusd,
  cache_write_5m_tokens = u.cache_write_5m_tokens + excluded.cache_write_5m_tokens,
  cache_write_1h_tokens = u.cache_write_1h_tokens + excluded.cache_write_1h_tokens`

// Write adds recs, each once by its request id, in one round trip.
func (p *Postgres) Write(ctx context.Context, recs []Record) error {
	n := len(recs)
	ids, keys, models := make([]string, n), make([]string, n), make([]string, n)
	at := make([]time.Time, n)
	prompt, cached, completion, reasoning := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	status, outcome, counted := make([]int32, n), make([]string, n), make([]bool, n)
	cost, kind, project, api := make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
	write5m, write1h := make([]int64, n), make([]int64, n)
	backend, code, ttft, dur, logOnly := make([]string, n), make([]string, n), make([]int64, n), make([]int64, n), make([]bool, n)
	for i, r := range recs {
		cost[i], kind[i], project[i], api[i] = int64(r.Cost), r.kind(), r.Project, r.API
		ids[i], keys[i], models[i], at[i] = r.RequestID, r.Key, r.Model, r.Time.UTC()
		prompt[i], cached[i], completion[i], reasoning[i] = r.PromptTokens, r.CachedTokens, r.CompletionTokens, r.ReasoningTokens
		status[i], outcome[i], counted[i] = int32(r.Status), r.Outcome, r.Counted
		write5m[i], write1h[i] = r.CacheWrite5mTokens, r.CacheWrite1hTokens
		backend[i], code[i], ttft[i], dur[i], logOnly[i] = r.Backend, r.ErrorCode, r.TTFT.Microseconds(), r.Duration.Microseconds(), r.LogOnly
	}
	_, err := p.pool.Exec(ctx, writeSQL, ids, keys, models, at, prompt, cached, completion, reasoning, status, outcome, counted, p.logDays > 0, cost, kind, project, api, write5m, write1h,
		backend, code, ttft, dur, logOnly)
	if err != nil {
		return fmt.Errorf("write %d usage records: %w", n, err)
	}
	p.prune(ctx)
	return nil
}

// prune forgets, once an hour, the request ids past requestIDDays (a
// delete by an indexed time) and the log's days past its own (whole
// partitions dropped), and creates the partitions of the days ahead.
func (p *Postgres) prune(ctx context.Context) {
	hour := time.Now().Unix() / 3600
	if p.pruned.Swap(hour) == hour {
		return
	}
	now := time.Now().UTC()
	p.pool.Exec(ctx, "DELETE FROM usage_request_ids WHERE at < $1", now.AddDate(0, 0, -requestIDDays))
	if err := p.keepPartitions(ctx, now); err != nil {
		// Rows of a day without its partition go to the default one
		// meanwhile; the next hour tries again.
		slog.Default().Warn("request_log partitions", "err", err)
	}
}

// monthRange is a YYYY-MM period's first instant and the next month's.
func monthRange(period string) (time.Time, time.Time, error) {
	start, err := time.Parse("2006-01", period)
	if err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("period %q: %w", period, err)
	}
	return start, start.AddDate(0, 1, 0), nil
}

const monthSQL = `
SELECT key_id, model, to_char(date_trunc('day', hour), 'YYYY-MM-DD'), sum(prompt_tokens)::bigint,
       sum(cached_prompt_tokens)::bigint, sum(completion_tokens)::bigint, sum(reasoning_tokens)::bigint,
       sum(requests)::bigint, sum(cost_pusd)::bigint, sum(cache_write_5m_tokens)::bigint, sum(cache_write_1h_tokens)::bigint
FROM usage_hourly WHERE hour >= $1 AND hour < $2 AND ($3 = '' OR key_id = $3)
GROUP BY 1, 2, 3`

// Summary is key's ledger for a month.
func (p *Postgres) Summary(ctx context.Context, key, period string) (*Summary, error) {
	all, err := p.month(ctx, key, period)
	if err != nil {
		return nil, err
	}
	if s := all[key]; s != nil {
		return s, nil
	}
	return newSummary(period), nil
}

func (p *Postgres) month(ctx context.Context, key, period string) (map[string]*Summary, error) {
	start, end, err := monthRange(period)
	if err != nil {
		return nil, err
	}
	rows, err := p.pool.Query(ctx, monthSQL, start, end, key)
	if err != nil {
		return nil, fmt.Errorf("usage in %s: %w", period, err)
	}
	defer rows.Close()
	out := map[string]*Summary{}
	for rows.Next() {
		var k, model, day string
		var r Row
		if err := rows.Scan(&k, &model, &day, &r.Prompt, &r.CachedPrompt, &r.Completion, &r.Reasoning, &r.Requests, &r.Cost, &r.CacheWrite5m, &r.CacheWrite1h); err != nil {
			return nil, fmt.Errorf("usage in %s: %w", period, err)
		}
		s := out[k]
		if s == nil {
			s = newSummary(period)
			out[k] = s
		}
		s.Add(model, day, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("usage in %s: %w", period, err)
	}
	return out, nil
}

// bucketsSQL sums in the database, by the dimensions asked for only, so
// that a month of every key's usage comes back as a few rows.
const bucketsSQL = `
SELECT date_trunc($1, hour), CASE WHEN $7 THEN key_id ELSE '' END, CASE WHEN $8 THEN model ELSE '' END,
       CASE WHEN $10 THEN project ELSE '' END, kind,
       sum(prompt_tokens)::bigint, sum(cached_prompt_tokens)::bigint, sum(completion_tokens)::bigint,
       sum(reasoning_tokens)::bigint, sum(requests)::bigint, sum(cost_pusd)::bigint,
       sum(cache_write_5m_tokens)::bigint, sum(cache_write_1h_tokens)::bigint
FROM usage_hourly
WHERE hour >= $2 AND hour < $3 AND ($4 = '' OR kind = $4)
  AND (cardinality($5::text[]) = 0 OR key_id = ANY($5)) AND (cardinality($6::text[]) = 0 OR model = ANY($6))
  AND (cardinality($9::text[]) = 0 OR project = ANY($9))
GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5`

// Buckets reads usage by hour or day (UTC).
func (p *Postgres) Buckets(ctx context.Context, q BucketQuery) ([]BucketRow, error) {
	grain := "day"
	if q.Hourly {
		grain = "hour"
	}
	rows, err := p.pool.Query(ctx, bucketsSQL, grain, q.Start, q.End, q.Kind, nonNilStrings(q.Keys), nonNilStrings(q.Models),
		q.ByKey, q.ByModel, nonNilStrings(q.Projects), q.ByProject)
	if err != nil {
		return nil, fmt.Errorf("usage buckets: %w", err)
	}
	defer rows.Close()
	var out []BucketRow
	for rows.Next() {
		var b BucketRow
		if err := rows.Scan(&b.Start, &b.Key, &b.Model, &b.Project, &b.Kind, &b.Prompt, &b.CachedPrompt, &b.Completion,
			&b.Reasoning, &b.Requests, &b.Cost, &b.CacheWrite5m, &b.CacheWrite1h); err != nil {
			return nil, fmt.Errorf("usage buckets: %w", err)
		}
		b.Start = b.Start.UTC()
		out = append(out, b)
	}
	return out, rows.Err()
}

func nonNilStrings(l []string) []string {
	if l == nil {
		return []string{}
	}
	return l
}
