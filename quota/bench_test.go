package quota

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/obol/obol/internal/redistest"
)

// BenchmarkAdmitSettle is one request's quota work: admit, then settle
// with a different count, over 64 keys from parallel goroutines; with a
// concurrency cap, the lease taken and released too; with a project, at
// both levels; with budgets, a cost held and settled at both.
func BenchmarkAdmitSettle(b *testing.B) {
	rdb, prefix := redistest.Shared(b)
	for _, bc := range []struct {
		name        string
		s           store
		concurrency int64
		project     bool
		budget      int64
	}{
		{"memory", NewMemory(), 0, false, 0},
		{"redis", &redisStore{NewRedis(rdb, prefix)}, 0, false, 0},
		{"memory+concurrency", NewMemory(), 1 << 20, false, 0},
		{"redis+concurrency", &redisStore{NewRedis(rdb, prefix)}, 1 << 20, false, 0},
		{"memory+project", NewMemory(), 1 << 20, true, 0},
		{"redis+project", &redisStore{NewRedis(rdb, prefix)}, 1 << 20, true, 0},
		{"memory+project+budgets", NewMemory(), 1 << 20, true, 1 << 60},
		{"redis+project+budgets", &redisStore{NewRedis(rdb, prefix)}, 1 << 20, true, 1 << 60},
	} {
		b.Run(bc.name, func(b *testing.B) {
			lim := Limits{RPM: 1 << 40, TPM: 1 << 50, TPD: 1 << 50, Concurrency: bc.concurrency, Budget: bc.budget}
			var n atomic.Int64
			ctx := context.Background()
			b.ReportAllocs()
			cpu := redistest.CPU(b, rdb)
			b.RunParallel(func(pb *testing.PB) {
				i := n.Add(1)
				sub := One("key_"+strconv.FormatInt(i%64, 10), lim)
				if bc.project {
					sub.Project, sub.ProjectLimits = "p"+strconv.FormatInt(i%8, 10), lim
				}
				sub = sub.Prepared() // as a key's resolved identity holds it
				for pb.Next() {
					d, err := bc.s.Admit(ctx, sub, 1000, 1_500_000_000)
					if err != nil || !d.Allowed {
						b.Fatal(d, err)
					}
					if err := bc.s.Settle(ctx, d.Reservation, 400, 600_000_000); err != nil {
						b.Fatal(err)
					}
				}
			})
			if _, ok := bc.s.(*redisStore); ok {
				used := redistest.CPU(b, rdb) - cpu
				b.ReportMetric(float64(used.Microseconds())/float64(b.N), "redis-µs/op")
			}
		})
	}
}
