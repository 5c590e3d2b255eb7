package keys

import (
	"context"
	"testing"

	"github.com/obol/obol/internal/pgtest"
)

// BenchmarkLookup is authentication of a known key from the cache: a
// checksum, a SHA-256, a map read under a read lock.
func BenchmarkLookup(b *testing.B) {
	pool, _ := pgtest.Shared(b)
	r, err := NewRegistry(context.Background(), NewPostgres(pool), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	_, secret, err := r.Create(context.Background(), Spec{Tier: "pro"})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if e, err := r.Lookup(ctx, secret); e == nil || err != nil {
				b.Fatal("lookup failed")
			}
		}
	})
}
