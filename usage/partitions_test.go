package usage

import (
	"context"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
)

// TestRequestLogPartitions: request_log keeps a partition a day, made
// ahead of the days; a row of a day without one waits in the default
// partition and moves into the day's when it is made; retention drops
// whole partitions past the log's days, and the usage of those days
// stays in the ledger.
func TestRequestLogPartitions(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	p := NewPostgres(pool, 5)
	ctx := context.Background()
	now := time.Now().UTC()
	old, late := now.AddDate(0, 0, -10), now.AddDate(0, 0, 4) // neither day has a partition yet
	recs := []Record{
		{RequestID: "r-old", Key: "k", Model: "m", Time: old, PromptTokens: 1, Status: 200},
		{RequestID: "r-now", Key: "k", Model: "m", Time: now, PromptTokens: 1, Status: 200},
		{RequestID: "r-late", Key: "k", Model: "m", Time: late, PromptTokens: 1, Status: 200},
	}
	if err := p.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	count := func(table string) int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The write pruned: the old day's row was deleted from the default
	// partition, past the 5 days kept; the late one waits there.
	if n := count("request_log_default"); n != 1 {
		t.Errorf("the default partition holds %d rows, want the late day's 1", n)
	}
	if n := count(partitionName(now.Truncate(24 * time.Hour))); n != 1 {
		t.Errorf("today's partition holds %d rows", n)
	}
	// The late day's partition, made when its day comes near, takes its row.
	if err := p.keepPartitions(ctx, late.AddDate(0, 0, -1)); err != nil {
		t.Fatal(err)
	}
	if d, n := count("request_log_default"), count(partitionName(late.Truncate(24*time.Hour))); d != 0 || n != 1 {
		t.Errorf("after the late day's partition: default %d, the day's %d", d, n)
	}
	// Ten days on, today's partition is dropped whole; its usage stays.
	if err := p.keepPartitions(ctx, now.AddDate(0, 0, 10)); err != nil {
		t.Fatal(err)
	}
	var exists bool
	pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", partitionName(now.Truncate(24*time.Hour))).Scan(&exists)
	if exists {
		t.Error("a partition past the log's days was kept")
	}
	s, err := p.Summary(ctx, "k", now.Format("2006-01"))
	if err != nil || s.ByModel["m"].Requests == 0 {
		t.Errorf("the ledger lost the usage of a dropped day: %+v %v", s, err)
	}
}
