package usage

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

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
