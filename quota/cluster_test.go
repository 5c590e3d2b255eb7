package quota

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obol/obol/internal/redistest"
)

// TestCluster: on a three-master Redis Cluster every key's scripts run
// (their keys share a hash slot, a key's with its project's), keys spread
// over the masters, and the limits hold per key.
func TestCluster(t *testing.T) {
	rdb, addrs := redistest.ClusterClient(t, 3)
	ctx := context.Background()
	r := NewRedis(rdb, "obol:")
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	r.now = func() time.Time { return clock }
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	lim := Limits{RPM: 3, TPM: 10000, TPD: 100000}
	for k := 0; k < 30; k++ {
		key := fmt.Sprintf("key_%d", k)
		allowed := 0
		for i := 0; i < 5; i++ {
			d, err := r.Admit(ctx, One(key, lim), 100, 0)
			if err != nil {
				t.Fatalf("%s: %v", key, err)
			}
			if d.Allowed {
				allowed++
				if err := r.SettleBatch(ctx, []Settlement{{Res: d.Reservation, Actual: 40}}); err != nil {
					t.Fatalf("settle %s: %v", key, err)
				}
			}
		}
		if allowed != 3 {
			t.Errorf("%s: admitted %d, want 3", key, allowed)
		}
		d, err := r.Peek(ctx, One(key, lim))
		if err != nil || d.DailyUsed != 120 {
			t.Errorf("%s: %+v, %v; want 120 tokens spent today", key, d, err)
		}
	}
	// A key and its project count in one script: their keys share the
	// project's slot.
	proj := Subject{Key: "key_p", Limits: lim, Project: "acme", ProjectLimits: Limits{RPM: 2, Concurrency: 5}}
	for i := 0; i < 3; i++ {
		d, err := r.Admit(ctx, proj, 100, 0)
		if err != nil || d.Allowed != (i < 2) {
			t.Fatalf("a key of a project, request %d: %+v, %v", i, d, err)
		}
		if d.Allowed {
			if err := r.Renew(ctx, d.Reservation); err != nil {
				t.Fatal(err)
			}
			if err := r.SettleBatch(ctx, []Settlement{{Res: d.Reservation, Actual: 40}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// The keys landed on more than one master.
	if used := redistest.MastersUsed(t, addrs); used < 2 {
		t.Errorf("keys on %d masters; the test did not exercise the cluster", used)
	}
}
