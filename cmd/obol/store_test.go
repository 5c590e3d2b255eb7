package main

import (
	"context"
	"strings"
	"testing"

	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/quota"
)

// TestRedisModes: each redis.mode builds a client from its URL that the
// quota scripts run on: a single node, a three-master Cluster (nodes as
// ?addr=), and a Sentinel-watched master (?master_name=).
func TestRedisModes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Redis servers")
	}
	single := redistest.Start(t)
	cluster := redistest.Cluster(t, 3)
	sentinel := redistest.StartSentinel(t, single, "obolmaster")
	tests := []struct{ mode, url string }{
		{"single", single.URL()},
		{"cluster", "redis://" + cluster[0] + "?addr=" + strings.Join(cluster[1:], "&addr=")},
		{"sentinel", "redis://" + sentinel.Addr() + "?master_name=obolmaster"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			rc := RedisConfig{URL: tt.url, Mode: tt.mode}
			if err := rc.check(); err != nil {
				t.Fatal(err)
			}
			rdb, err := rc.client()
			if err != nil {
				t.Fatal(err)
			}
			defer rdb.Close()
			r := quota.NewRedis(rdb, "obol-modes:")
			ctx := context.Background()
			if err := r.Load(ctx); err != nil {
				t.Fatal(err)
			}
			lim := quota.Limits{RPM: 2}
			for i, want := range []bool{true, true, false} {
				d, err := r.Admit(ctx, quota.One("key_"+tt.mode, lim), 1, 0)
				if err != nil || d.Allowed != want {
					t.Fatalf("request %d: %+v, %v", i, d, err)
				}
			}
		})
	}
}
