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

func benchmarkLedger(b *testing.B, st Store) {
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
}
