package usage

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/pgtest"
)

// BenchmarkLedger is one record through the Ledger, waiting for its
// write as the gateway does, from many goroutines at once: the cost per
// record once writes are batched.
func BenchmarkLedger(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		e, err := OpenEmbedded(bolttest.Open(b))
		if err != nil {
			b.Fatal(err)
		}
		benchmarkLedger(b, e)
	})
	b.Run("postgres", func(b *testing.B) {
		pool, _ := pgtest.Shared(b)
		benchmarkLedger(b, NewPostgres(pool, 35))
	})
}

// countingStore counts the writes and records that reach the store.
type countingStore struct {
	Store
	writes, records atomic.Int64
}

func (c *countingStore) Write(ctx context.Context, recs []Record) error {
	c.writes.Add(1)
	c.records.Add(int64(len(recs)))
	return c.Store.Write(ctx, recs)
}

func benchmarkLedger(b *testing.B, store Store) {
	st := &countingStore{Store: store}
	l := NewLedger(st, Options{})
	defer l.Close(context.Background())
	var seq atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(16) // a gateway has many requests finishing at once
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "chat_" + strconv.FormatInt(seq.Add(1), 10)
			<-l.Record(Record{RequestID: id, Key: "key_bench", Model: "hermes", Time: nov, PromptTokens: 20, CompletionTokens: 20})
		}
	})
	b.StopTimer()
	if w := st.writes.Load(); w > 0 {
		b.ReportMetric(float64(st.records.Load())/float64(w), "records/batch")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkLedgerThroughput is records queued as fast as requests could
// end, without waiting for them, until Close has written them all: the
// most the store takes, and the batches it takes them in.
func BenchmarkLedgerThroughput(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		e, err := OpenEmbedded(bolttest.Open(b))
		if err != nil {
			b.Fatal(err)
		}
		benchmarkThroughput(b, e)
	})
	b.Run("postgres", func(b *testing.B) {
		pool, _ := pgtest.Shared(b)
		benchmarkThroughput(b, NewPostgres(pool, 35))
	})
}

func benchmarkThroughput(b *testing.B, store Store) {
	st := &countingStore{Store: store}
	l := NewLedger(st, Options{Capacity: b.N + 1})
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		l.Record(Record{RequestID: "chat_" + strconv.Itoa(i), Key: "key_" + strconv.Itoa(i%100), Model: "hermes", Time: nov, PromptTokens: 20, CompletionTokens: 20})
	}
	if err := l.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if w := st.writes.Load(); w > 0 {
		b.ReportMetric(float64(st.records.Load())/float64(w), "records/batch")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkMonthOfBuckets reads a month of daily buckets by model over
// 10,000 keys × 5 models (1.5 million rows of usage: each key and model
// used once a day), as the organization endpoints and the dashboard do.
func BenchmarkMonthOfBuckets(b *testing.B) {
	pool, _ := pgtest.Shared(b)
	ctx := context.Background()
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	models := []string{"hermes", "minos", "pluto", "styx", "charon"}
	rows := make([][]any, 0, 10_000*5*30)
	for k := 0; k < 10_000; k++ {
		for _, m := range models {
			for d := 0; d < 30; d++ {
				rows = append(rows, []any{"key_" + strconv.Itoa(k), m, "completions", start.Add(time.Duration(d*24+k%24) * time.Hour),
					int64(100), int64(10), int64(50), int64(0), int64(1), int64(125_000_000)})
			}
		}
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"usage_hourly"}, []string{"key_id", "model", "kind", "hour", "prompt_tokens",
		"cached_prompt_tokens", "completion_tokens", "reasoning_tokens", "requests", "cost_pusd"}, pgx.CopyFromRows(rows)); err != nil {
		b.Fatal(err)
	}
	pool.Exec(ctx, "ANALYZE usage_hourly")
	p := NewPostgres(pool, 35)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		got, err := p.Buckets(ctx, BucketQuery{Start: start, End: start.AddDate(0, 1, 0), Kind: KindCompletions, ByModel: true})
		if err != nil || len(got) != 30*len(models) {
			b.Fatalf("%d rows, %v", len(got), err)
		}
	}
}
