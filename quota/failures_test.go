package quota

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/redistest"
)

// failer is what both failure counts offer.
type failer interface {
	Fail(ctx context.Context, addr string) (bool, time.Duration, error)
}

// TestFailuresAllowance: a burst, then one per step; addresses apart.
func TestFailuresAllowance(t *testing.T) {
	lim := FailureLimit{Burst: 3, PerMinute: 6} // one every 10 s
	rdb, prefix := redistest.Shared(t)
	for name, f := range map[string]failer{"memory": NewFailures(lim), "redis": NewSharedFailures(rdb, prefix, lim)} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			for i := 0; i < 3; i++ {
				if ok, _, err := f.Fail(ctx, "10.0.0.1"); !ok || err != nil {
					t.Fatalf("failure %d refused: %v", i+1, err)
				}
			}
			ok, wait, err := f.Fail(ctx, "10.0.0.1")
			if ok || err != nil || wait <= 0 || wait > 10*time.Second {
				t.Errorf("4th failure: allowed %v, wait %v, %v", ok, wait, err)
			}
			if ok, _, _ := f.Fail(ctx, "10.0.0.2"); !ok {
				t.Error("another address was refused")
			}
		})
	}
}

// TestFailuresMemoryBounded: addresses whose allowance has refilled are
// forgotten, and no flood of addresses grows the map past its bound.
func TestFailuresMemoryBounded(t *testing.T) {
	f := NewFailures(DefaultFailureLimit)
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	f.now = func() time.Time { return now }
	ctx := context.Background()
	for i := 0; i < 60_000; i++ {
		f.Fail(ctx, fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&255, i&255))
	}
	if n := f.Len(); n != 60_000 {
		t.Fatalf("%d addresses held within their minute, want 60000", n)
	}
	now = now.Add(time.Minute) // every allowance has refilled
	for i := 0; i < 1024; i++ {
		f.Fail(ctx, fmt.Sprintf("172.16.%d.%d", i>>8, i&255))
	}
	if n := f.Len(); n > 1024 {
		t.Errorf("%d addresses held after the old ones refilled, want at most 1024", n)
	}
	for i := 0; i < 2*maxAddresses; i++ {
		f.Fail(ctx, fmt.Sprintf("flood-%d", i))
	}
	if n := f.Len(); n > maxAddresses {
		t.Errorf("%d addresses held in a flood, want at most %d", n, maxAddresses)
	}
}

// TestSharedFailuresUnderPrefix: the failed-auth counts live under the
// configured prefix, as every key obol writes does.
func TestSharedFailuresUnderPrefix(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	f := NewSharedFailures(rdb, "tenant-a:", FailureLimit{PerMinute: 10, Burst: 2})
	ctx := context.Background()
	for i := range 3 {
		ok, _, err := f.Fail(ctx, "192.0.2.1")
		if err != nil || ok != (i < 2) {
			t.Fatalf("failure %d: %v %v", i, ok, err)
		}
	}
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("keys %v, %v", keys, err)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "tenant-a:") {
			t.Errorf("key %q is not under the prefix", k)
		}
	}
}
