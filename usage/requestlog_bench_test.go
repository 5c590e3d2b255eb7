package usage

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
)

// TestRequestLogAtScale measures the request log in PostgreSQL at ten
// million rows over 30 daily partitions (OBOL_REQUEST_LOG_ROWS=10000000;
// skipped unless set): the insert rate of the ledger's batched writes, a
// filtered page (one key, 5xx, newest first, 100 rows, and the page
// after it), and the time to drop a day. docs/BENCHMARKS.md has the
// figures.
func TestRequestLogAtScale(t *testing.T) {
	rows, _ := strconv.Atoi(os.Getenv("OBOL_REQUEST_LOG_ROWS"))
	if rows <= 0 {
		t.Skip("set OBOL_REQUEST_LOG_ROWS (10000000 for the documented run)")
	}
	pool, _ := pgtest.Shared(t)
	p := NewPostgres(pool, 40)
	ctx := context.Background()
	now := time.Now().UTC()
	for d := range 31 {
		if err := p.createPartition(ctx, now.Truncate(24*time.Hour).AddDate(0, 0, -d)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	// 1,000 keys, every 47th request a 502, spread over 30 days.
	_, err := pool.Exec(ctx, `INSERT INTO request_log (request_id, at, key_id, model, prompt_tokens, cached_prompt_tokens,
		completion_tokens, reasoning_tokens, status, cost_pusd, project, api, error_code)
		SELECT 'r' || i, $1::timestamptz - (i % 2592000) * interval '1 second', 'key_' || (i % 1000), 'hermes', 100, 0, 50, 0,
		       CASE WHEN i % 47 = 0 THEN 502 ELSE 200 END, 1000 * (i % 7), 'p' || (i % 10), 'chat',
		       CASE WHEN i % 47 = 0 THEN 'upstream_error' ELSE '' END
		FROM generate_series(1, $2) AS i`, now, rows)
	if err != nil {
		t.Fatal(err)
	}
	pool.Exec(ctx, "ANALYZE request_log")
	t.Logf("loaded %d rows in %v", rows, time.Since(start).Round(time.Millisecond))

	// The ledger's writes: batches of 512 records, each also a request_log row.
	const batches = 40
	start = time.Now()
	for b := range batches {
		recs := make([]Record, 512)
		for i := range recs {
			recs[i] = Record{RequestID: fmt.Sprintf("w-%d-%d", b, i), Key: "key_w", Model: "hermes", Time: time.Now(), PromptTokens: 10,
				CompletionTokens: 5, Status: 200, API: "chat", Cost: 1000}
		}
		if err := p.Write(ctx, recs); err != nil {
			t.Fatal(err)
		}
	}
	took := time.Since(start)
	t.Logf("insert: %d records in %v: %.0f records/s", batches*512, took.Round(time.Millisecond), float64(batches*512)/took.Seconds())

	q := RequestQuery{Key: "key_7", StatusClass: 5, ErrorCode: "upstream_error", Limit: 100}
	q.prepare()
	start = time.Now()
	page, err := p.Requests(ctx, q)
	first := time.Since(start)
	if err != nil || len(page) != 101 {
		t.Fatalf("a filtered page: %d rows, %v", len(page), err)
	}
	q.Cursor = cursorAfter(page[99])
	q.prepare()
	start = time.Now()
	if _, err := p.Requests(ctx, q); err != nil {
		t.Fatal(err)
	}
	t.Logf("a filtered page (key_7, 5xx, 100 rows): %v; the page after it: %v", first.Round(time.Microsecond), time.Since(start).Round(time.Microsecond))
	q = RequestQuery{Limit: 100}
	q.prepare()
	start = time.Now()
	if _, err := p.Requests(ctx, q); err != nil {
		t.Fatal(err)
	}
	t.Logf("the newest page, unfiltered: %v", time.Since(start).Round(time.Microsecond))

	day := now.Truncate(24*time.Hour).AddDate(0, 0, -20)
	var n int
	pool.QueryRow(ctx, "SELECT count(*) FROM "+partitionName(day)).Scan(&n)
	start = time.Now()
	if _, err := pool.Exec(ctx, "DROP TABLE "+partitionName(day)); err != nil {
		t.Fatal(err)
	}
	t.Logf("drop a day (%d rows): %v", n, time.Since(start).Round(time.Microsecond))
}
