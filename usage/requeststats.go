package usage

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// Latency and errors over a time range, from the request log: per model
// and per backend, the requests, the share that failed (5xx), and time to
// first token and duration at the median and the 95th percentile.

// RequestStats is one model's or backend's figures.
type RequestStats struct {
	Model     string  `json:"model"`
	Backend   string  `json:"backend,omitempty"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"` // answered 5xx
	ErrorRate float64 `json:"error_rate"`
	TTFTP50   float64 `json:"ttft_p50_ms"`
	TTFTP95   float64 `json:"ttft_p95_ms"`
	DurP50    float64 `json:"duration_p50_ms"`
	DurP95    float64 `json:"duration_p95_ms"`
}

// statsSQL sums request_log over [$1, $2) by model, and by model and
// backend; time to first token counts streams only (0 is none).
const statsSQL = `
SELECT model, CASE WHEN $3 THEN backend ELSE '' END, count(*), count(*) FILTER (WHERE status >= 500),
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE ttft_us > 0), 0),
       coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_us) FILTER (WHERE ttft_us > 0), 0),
       coalesce(percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_us), 0),
       coalesce(percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_us), 0)
FROM request_log WHERE at >= $1 AND at < $2
GROUP BY 1, 2 ORDER BY 1, 2`

// requestStatter is a store that sums its request log.
type requestStatter interface {
	RequestStats(ctx context.Context, start, end time.Time, byBackend bool) ([]RequestStats, error)
}

// RequestStats are the figures of [start, end) by model, or by model and
// backend.
func (l *Ledger) RequestStats(ctx context.Context, start, end time.Time, byBackend bool) ([]RequestStats, error) {
	rs, ok := l.store.(requestStatter)
	if !ok {
		return nil, ErrNoRequestLog
	}
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	return rs.RequestStats(ctx, start, end, byBackend)
}

// RequestStats sums request_log.
func (p *Postgres) RequestStats(ctx context.Context, start, end time.Time, byBackend bool) ([]RequestStats, error) {
	if p.logDays <= 0 {
		return nil, ErrNoRequestLog
	}
	rows, err := p.pool.Query(ctx, statsSQL, start, end, byBackend)
	if err != nil {
		return nil, fmt.Errorf("request stats: %w", err)
	}
	defer rows.Close()
	var out []RequestStats
	for rows.Next() {
		var s RequestStats
		if err := rows.Scan(&s.Model, &s.Backend, &s.Requests, &s.Errors, &s.TTFTP50, &s.TTFTP95, &s.DurP50, &s.DurP95); err != nil {
			return nil, fmt.Errorf("request stats: %w", err)
		}
		out = append(out, s.finish(1000))
	}
	return out, rows.Err()
}

// finish sets the error rate and turns the percentiles into milliseconds
// (div is what makes one).
func (s RequestStats) finish(div float64) RequestStats {
	if s.Requests > 0 {
		s.ErrorRate = float64(s.Errors) / float64(s.Requests)
	}
	s.TTFTP50, s.TTFTP95, s.DurP50, s.DurP95 = s.TTFTP50/div, s.TTFTP95/div, s.DurP50/div, s.DurP95/div
	return s
}

// RequestStats sums the embedded log's entries.
func (e *Embedded) RequestStats(ctx context.Context, start, end time.Time, byBackend bool) ([]RequestStats, error) {
	type acc struct {
		s         RequestStats
		ttft, dur []float64
	}
	groups := map[[2]string]*acc{}
	q := RequestQuery{Start: start, End: end, Limit: 1000}
	q.prepare()
	for {
		page, err := e.Requests(ctx, q)
		if err != nil {
			return nil, err
		}
		for _, en := range page[:min(len(page), q.limitOrDefault)] {
			k := [2]string{en.Model, ""}
			if byBackend {
				k[1] = en.Backend
			}
			a := groups[k]
			if a == nil {
				a = &acc{s: RequestStats{Model: k[0], Backend: k[1]}}
				groups[k] = a
			}
			a.s.Requests++
			if en.Status >= 500 {
				a.s.Errors++
			}
			if en.TTFTMs > 0 {
				a.ttft = append(a.ttft, en.TTFTMs)
			}
			a.dur = append(a.dur, en.DurationMs)
		}
		if len(page) <= q.limitOrDefault {
			break
		}
		last := page[q.limitOrDefault-1]
		q.beforeT, q.beforeID, q.hasBefore = last.Time, last.RequestID, true
	}
	var out []RequestStats
	for _, a := range groups {
		a.s.TTFTP50, a.s.TTFTP95 = percentile(a.ttft, 0.5), percentile(a.ttft, 0.95)
		a.s.DurP50, a.s.DurP95 = percentile(a.dur, 0.5), percentile(a.dur, 0.95)
		out = append(out, a.s.finish(1))
	}
	slices.SortFunc(out, func(x, y RequestStats) int {
		return cmp.Or(cmp.Compare(x.Model, y.Model), cmp.Compare(x.Backend, y.Backend))
	})
	return out, nil
}

// percentile interpolates as PostgreSQL's percentile_cont does.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	pos := p * float64(len(xs)-1)
	lo := int(pos)
	if lo+1 >= len(xs) {
		return xs[lo]
	}
	return xs[lo] + (pos-float64(lo))*(xs[lo+1]-xs[lo])
}
