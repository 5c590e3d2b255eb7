package usage

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/money"
)

type ledger interface {
	Write(ctx context.Context, recs []Record) error
	Summary(ctx context.Context, key, period string) (*Summary, error)
	Buckets(ctx context.Context, q BucketQuery) ([]BucketRow, error)
}

// forEachLedger runs f against real PostgreSQL and against the embedded
// store.
func forEachLedger(t *testing.T, f func(t *testing.T, l ledger)) {
	t.Run("postgres", func(t *testing.T) {
		pool, _ := pgtest.Shared(t)
		f(t, NewPostgres(pool, 35))
	})
	t.Run("embedded", func(t *testing.T) {
		e, err := OpenEmbedded(bolttest.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		f(t, e)
	})
}

var nov = time.Date(2026, 11, 15, 12, 0, 0, 0, time.UTC)

// record writes rec alone and reports whether it was added, from the
// requests its key, month and model count before and after.
func record(t *testing.T, l ledger, rec Record) bool {
	t.Helper()
	ctx := context.Background()
	requests := func() int64 {
		s, err := l.Summary(ctx, rec.Key, rec.Period())
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := s.ByModel[rec.Model]; ok {
			return m.Requests
		}
		return 0
	}
	before := requests()
	if err := l.Write(ctx, []Record{rec}); err != nil {
		t.Fatal(err)
	}
	return requests() > before
}

func TestLedgerTotals(t *testing.T) {
	forEachLedger(t, func(t *testing.T, l ledger) {
		ctx := context.Background()
		recs := []Record{
			{RequestID: "r1", Key: "key_a", Model: "hermes", Time: nov, PromptTokens: 10, CompletionTokens: 5},
			{RequestID: "r2", Key: "key_a", Model: "hermes", Time: nov, PromptTokens: 20, CompletionTokens: 7},
			{RequestID: "r3", Key: "key_a", Model: "pluto", Time: nov, PromptTokens: 100, CompletionTokens: 0},
			{RequestID: "r4", Key: "key/b", Model: "hermes", Time: nov, PromptTokens: 1, CompletionTokens: 1},
		}
		for _, r := range recs {
			if !record(t, l, r) {
				t.Fatalf("%s not added", r.RequestID)
			}
		}
		// A retried write of the same request changes nothing.
		if record(t, l, recs[0]) {
			t.Error("a duplicate request id was added again")
		}
		s, err := l.Summary(ctx, "key_a", "2026-11")
		if err != nil {
			t.Fatal(err)
		}
		s.Days = nil // TestDays
		want := `{"period":"2026-11","total_tokens":142,"total_cost":0,"currency":"usd","by_model":{"hermes":{"prompt":30,"cached_prompt":0,"completion":12,"reasoning":0,"requests":2,"cost":0},"pluto":{"prompt":100,"cached_prompt":0,"completion":0,"reasoning":0,"requests":1,"cost":0}}}`
		if got, _ := json.Marshal(s); string(got) != want {
			t.Errorf("summary\n got %s\nwant %s", got, want)
		}
		// Every key's month, as the admin usage reads it (a key id with a
		// "/" too).
		rows, err := l.Buckets(ctx, BucketQuery{Start: nov.AddDate(0, 0, -14), End: nov.AddDate(0, 0, 16), ByKey: true})
		if err != nil {
			t.Fatal(err)
		}
		all := map[string]int64{}
		for _, r := range rows {
			all[r.Key] += r.Prompt + r.Completion
		}
		if len(all) != 2 || all["key/b"] != 2 || all["key_a"] != 142 {
			t.Errorf("all keys: %v", all)
		}
		empty, err := l.Summary(ctx, "key_a", "2026-10")
		if got, _ := json.Marshal(empty); err != nil || string(got) != `{"period":"2026-10","total_tokens":0,"total_cost":0,"currency":"usd","by_model":{}}` {
			t.Errorf("an empty month: %s, %v", got, err)
		}
	})
}

// TestMonthRollover: a request recorded at 23:59:59 UTC on the last day of
// a month counts in that month, one at 00:00 on the 1st in the next.
func TestMonthRollover(t *testing.T) {
	forEachLedger(t, func(t *testing.T, l ledger) {
		record(t, l, Record{RequestID: "a", Key: "k", Model: "hermes", Time: time.Date(2026, 11, 30, 23, 59, 59, 999e6, time.UTC), PromptTokens: 3})
		record(t, l, Record{RequestID: "b", Key: "k", Model: "hermes", Time: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), PromptTokens: 4})
		// 19:00 on the 30th in New York is already December in UTC.
		ny := time.FixedZone("EST", -5*3600)
		record(t, l, Record{RequestID: "c", Key: "k", Model: "hermes", Time: time.Date(2026, 11, 30, 19, 0, 0, 0, ny), PromptTokens: 5})
		for period, want := range map[string]int64{"2026-11": 3, "2026-12": 9} {
			s, err := l.Summary(context.Background(), "k", period)
			if err != nil || s.TotalTokens != want {
				t.Errorf("%s: %+v, %v; want %d tokens", period, s, err, want)
			}
		}
	})
}

// TestConcurrentRecords: parallel writers, each request written twice,
// count every request once.
func TestConcurrentRecords(t *testing.T) {
	forEachLedger(t, func(t *testing.T, l ledger) {
		var wg sync.WaitGroup
		for w := 0; w < 8; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 50; i++ {
					rec := Record{RequestID: fmt.Sprintf("req_%d", i*8+w%4), Key: "k", Model: "minos", Time: nov, PromptTokens: 2, CompletionTokens: 3}
					if err := l.Write(context.Background(), []Record{rec}); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		// Workers w and w+4 write the same 50 ids: 200 distinct requests.
		s, err := l.Summary(context.Background(), "k", "2026-11")
		if err != nil {
			t.Fatal(err)
		}
		if r := s.ByModel["minos"]; r.Requests != 200 || r.Prompt != 400 || r.Completion != 600 {
			t.Errorf("row %+v, want 200 requests", r)
		}
	})
}

// TestDesignExample: the /v1/usage shape, byte for byte as docs/api.md shows it.
func TestDesignExample(t *testing.T) {
	s := &Summary{Period: "2026-04", TotalTokens: 1248203, TotalCost: 31416 * money.PerDollar / 10000, Currency: "usd",
		ByModel: map[string]Row{"hermes": {Prompt: 412000, CachedPrompt: 120000, Completion: 98000, Requests: 1200, Cost: 4012 * money.PerDollar / 10000}}}
	want := `{"period":"2026-04","total_tokens":1248203,"total_cost":3.1416,"currency":"usd","by_model":{"hermes":{"prompt":412000,"cached_prompt":120000,"completion":98000,"reasoning":0,"requests":1200,"cost":0.4012}}}`
	if got, _ := json.Marshal(s); string(got) != want {
		t.Errorf("got %s", got)
	}
}

func TestParsePeriod(t *testing.T) {
	for in, ok := range map[string]bool{"2026-11": true, "2026-1": false, "2026-13": false, "26-11": false, "": false, "2026-11-01": false} {
		if _, err := ParsePeriod(in); (err == nil) != ok {
			t.Errorf("ParsePeriod(%q): %v", in, err)
		}
	}
}

// TestEmbeddedForgetsOldIDs: request ids past the idempotency window are
// dropped a day at a time; those within it still stop a second write.
func TestEmbeddedForgetsOldIDs(t *testing.T) {
	db := bolttest.Open(t)
	e, err := OpenEmbedded(db)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	old := Record{RequestID: "old", Key: "k", Model: "hermes", Time: now.Add(-3 * 24 * time.Hour), PromptTokens: 1}
	recent := Record{RequestID: "recent", Key: "k", Model: "hermes", Time: now.Add(-time.Hour), PromptTokens: 1}
	record(t, e, old)
	record(t, e, recent)
	e, err = OpenEmbedded(db) // a restart prunes
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(reqsBucket).Bucket([]byte(dayOf(old.Time))) != nil {
			t.Error("the ids of three days ago are still kept")
		}
		return nil
	})
	if record(t, e, recent) {
		t.Error("a request id of an hour ago was forgotten")
	}
}

// TestTokenCategories: cached prompt and reasoning tokens are kept beside
// the totals they are part of.
func TestTokenCategories(t *testing.T) {
	forEachLedger(t, func(t *testing.T, l ledger) {
		record(t, l, Record{RequestID: "a", Key: "k", Model: "minos", Time: nov, PromptTokens: 100, CachedTokens: 60, CompletionTokens: 40, ReasoningTokens: 25})
		record(t, l, Record{RequestID: "b", Key: "k", Model: "minos", Time: nov, PromptTokens: 10, CompletionTokens: 5})
		s, _ := l.Summary(context.Background(), "k", "2026-11")
		if r := s.ByModel["minos"]; r != (Row{Prompt: 110, CachedPrompt: 60, Completion: 45, Reasoning: 25, Requests: 2}) {
			t.Errorf("row %+v", r)
		}
	})
}

// TestHourlyRowsInSQL: the PostgreSQL ledger is a row per key, model and
// UTC hour that plain SQL reads, and the per-request log holds each
// request once.
func TestHourlyRowsInSQL(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	l := NewPostgres(pool, 35)
	ctx := context.Background()
	h := time.Date(2026, 11, 30, 23, 0, 0, 0, time.UTC)
	recs := []Record{
		{RequestID: "a", Key: "k", Model: "hermes", Time: h.Add(59*time.Minute + 59*time.Second + 999*time.Millisecond), PromptTokens: 3, CompletionTokens: 1, Status: 200, Outcome: "completed"},
		{RequestID: "b", Key: "k", Model: "hermes", Time: h.Add(time.Hour), PromptTokens: 4, CompletionTokens: 2, Status: 200},
		{RequestID: "a", Key: "k", Model: "hermes", Time: h, PromptTokens: 3, CompletionTokens: 1},
	}
	if err := l.Write(ctx, recs); err != nil {
		t.Fatal(err)
	}
	rows, err := pool.Query(ctx, "SELECT hour, prompt_tokens, completion_tokens, requests FROM usage_hourly WHERE key_id = 'k' ORDER BY hour")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var hour time.Time
		var p, c, n int64
		rows.Scan(&hour, &p, &c, &n)
		got = append(got, fmt.Sprintf("%s %d %d %d", hour.UTC().Format(time.RFC3339), p, c, n))
	}
	if want := "2026-11-30T23:00:00Z 3 1 1|2026-12-01T00:00:00Z 4 2 1"; strings.Join(got, "|") != want {
		t.Errorf("hourly rows %q, want %q", strings.Join(got, "|"), want)
	}
	var logged int
	pool.QueryRow(ctx, "SELECT count(*) FROM request_log").Scan(&logged)
	if logged != 2 {
		t.Errorf("%d requests logged, want 2", logged)
	}
}

// TestEmbeddedMovesMonthlyRows: a ledger written before daily rows keeps
// its months' totals.
func TestEmbeddedMovesMonthlyRows(t *testing.T) {
	db := bolttest.Open(t)
	db.Update(func(tx *bolt.Tx) error {
		b, _ := tx.CreateBucketIfNotExists(oldRowsBucket)
		v := make([]byte, 0, 24)
		for _, n := range []uint64{70, 30, 4} {
			v = binary.BigEndian.AppendUint64(v, n)
		}
		return b.Put([]byte("2026-10/key_a/hermes"), v)
	})
	e, err := OpenEmbedded(db)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := e.Summary(context.Background(), "key_a", "2026-10")
	if r := s.ByModel["hermes"]; r.Prompt != 70 || r.Completion != 30 || r.Requests != 4 {
		t.Errorf("moved row %+v", r)
	}
}
