package quota

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/obol/obol/internal/redistest"
)

// TestCluster: on a three-master Redis Cluster every key's scripts run
// (their keys share a hash slot), keys spread over the masters, and the
// limits hold per key.
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
			d, err := r.Admit(ctx, key, lim, 100)
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
		d, err := r.Peek(ctx, key, lim)
		if err != nil || d.DailyUsed != 120 {
			t.Errorf("%s: %+v, %v; want 120 tokens spent today", key, d, err)
		}
	}
	// The keys landed on more than one master.
	if used := redistest.MastersUsed(t, addrs); used < 2 {
		t.Errorf("keys on %d masters; the test did not exercise the cluster", used)
	}
}
