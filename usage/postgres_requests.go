package usage

import (
	"context"
	"fmt"
	"time"
)

// requestsSQL reads a page of request_log newest first, one row more than
// the page to tell whether another follows; a filter left zero does not
// filter ($10 false: no cursor).
const requestsSQL = `
SELECT at, request_id, key_id, project, model, backend, api, stream_outcome, status, error_code,
       prompt_tokens, cached_prompt_tokens, cache_write_5m_tokens, cache_write_1h_tokens, completion_tokens,
       reasoning_tokens, cost_pusd, ttft_us, duration_us
FROM request_log
WHERE ($1::timestamptz IS NULL OR at >= $1) AND ($2::timestamptz IS NULL OR at < $2)
  AND ($3 = '' OR key_id = $3) AND ($4 = '' OR project = $4) AND ($5 = '' OR model = $5)
  AND ($6 = 0 OR status / 100 = $6) AND ($7 = '' OR error_code = $7) AND cost_pusd >= $8
  AND (NOT $10 OR (at, request_id) < ($11, $12)) AND ($13 = '' OR request_id = $13)
ORDER BY at DESC, request_id DESC
LIMIT $9`

// Requests reads a page of the request log (request_log).
func (p *Postgres) Requests(ctx context.Context, q RequestQuery) ([]RequestEntry, error) {
	if p.logDays <= 0 {
		return nil, ErrNoRequestLog
	}
	var start, end *time.Time
	if !q.Start.IsZero() {
		start = &q.Start
	}
	if !q.End.IsZero() {
		end = &q.End
	}
	rows, err := p.pool.Query(ctx, requestsSQL, start, end, q.Key, q.Project, q.Model, q.StatusClass, q.ErrorCode, int64(q.MinCost),
		q.limitOrDefault+1, q.hasBefore, q.beforeT, q.beforeID, q.RequestID)
	if err != nil {
		return nil, fmt.Errorf("the request log: %w", err)
	}
	defer rows.Close()
	var out []RequestEntry
	for rows.Next() {
		var e RequestEntry
		var ttft, dur int64
		if err := rows.Scan(&e.Time, &e.RequestID, &e.Key, &e.Project, &e.Model, &e.Backend, &e.API, &e.Outcome, &e.Status, &e.ErrorCode,
			&e.Prompt, &e.Cached, &e.Write5m, &e.Write1h, &e.Completion, &e.Reasoning, &e.Cost, &ttft, &dur); err != nil {
			return nil, fmt.Errorf("the request log: %w", err)
		}
		e.Time, e.Stream = e.Time.UTC(), e.Outcome != ""
		e.ClientGone = e.Outcome == "client_gone" || e.ErrorCode == "client_closed"
		e.TTFTMs, e.DurationMs = float64(ttft)/1000, float64(dur)/1000
		out = append(out, e)
	}
	return out, rows.Err()
}
