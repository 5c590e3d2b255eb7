package usage

import (
	"context"
	"fmt"
	"time"

	"github.com/obol/obol/money"
)

// The ledger's reads: what its store has, bounded by the ledger's
// timeout; records still queued are not in them yet.

// Summary is key's ledger for a month, as the store has it: records still
// queued are not in it yet.
func (l *Ledger) Summary(ctx context.Context, key, period string) (*Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	return l.store.Summary(ctx, key, period)
}

// Buckets reads the store's usage by time bucket.
func (l *Ledger) Buckets(ctx context.Context, q BucketQuery) ([]BucketRow, error) {
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	return l.store.Buckets(ctx, q)
}

// Spent is what a key or a project (the other "") has spent in a month
// (YYYYMM), in picodollars, as the store has it: where a budget's counter
// starts.
func (l *Ledger) Spent(ctx context.Context, key, project, month string) (int64, error) {
	start, err := time.Parse("200601", month)
	if err != nil {
		return 0, fmt.Errorf("spent in %q: %w", month, err)
	}
	rows, err := l.levelRows(ctx, key, project, start, start.AddDate(0, 1, 0))
	var sum money.Money
	for _, r := range rows {
		sum += r.Cost
	}
	return int64(sum), err
}

// Used is how many tokens a key or a project (the other "") used on a
// UTC day (YYYYMMDD), prompt and completion, as the store has it: where
// a day's token counter starts when the counters lost it.
func (l *Ledger) Used(ctx context.Context, key, project, day string) (int64, error) {
	start, err := time.Parse("20060102", day)
	if err != nil {
		return 0, fmt.Errorf("used on %q: %w", day, err)
	}
	rows, err := l.levelRows(ctx, key, project, start, start.AddDate(0, 0, 1))
	var sum int64
	for _, r := range rows {
		sum += r.Prompt + r.Completion
	}
	return sum, err
}

// ByProject is a month's usage (from month, its first instant) summed
// by project ("" for keys in none), of every project or of only one.
func (l *Ledger) ByProject(ctx context.Context, month time.Time, only string) (map[string]Row, error) {
	q := BucketQuery{Start: month, End: month.AddDate(0, 1, 0), ByProject: true}
	if only != "" {
		q.Projects = []string{only}
	}
	rows, err := l.Buckets(ctx, q)
	if err != nil {
		return nil, err
	}
	out := map[string]Row{"": {}}
	for _, b := range rows {
		r := out[b.Project]
		r.AddRow(b.Row)
		out[b.Project] = r
	}
	return out, nil
}

// levelRows are a key's or a project's (the other "") buckets from start
// to end.
func (l *Ledger) levelRows(ctx context.Context, key, project string, start, end time.Time) ([]BucketRow, error) {
	q := BucketQuery{Start: start, End: end}
	if project != "" {
		q.Projects = []string{project}
	} else {
		q.Keys = []string{key}
	}
	return l.Buckets(ctx, q)
}
