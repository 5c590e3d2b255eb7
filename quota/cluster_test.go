package quota

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/redisbatch"
	"github.com/obol/obol/internal/redistest"
)

// TestCluster: on a three-master Redis Cluster every key's scripts run
// (their keys share a hash slot, a key's with its project's), keys spread
// over the masters, and the limits hold per key, deciding each request
// in Redis or admitting from slices.
func TestCluster(t *testing.T) {
	rdb, addrs := redistest.ClusterClient(t, 3)
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	newRedis := func(prefix string) *Redis {
		r := NewRedis(rdb, prefix)
		r.now = func() time.Time { return clock }
		if err := r.Load(context.Background()); err != nil {
			t.Fatal(err)
		}
		return r
	}
	t.Run("redis", func(t *testing.T) { clusterLimits(t, &redisStore{newRedis("obol:")}) })
	t.Run("slices", func(t *testing.T) {
		s := NewSlices(newRedis("obol-slices:"), SliceOptions{Tick: time.Hour}) // the test moves the clock; it flushes
		defer s.Close(context.Background())
		clusterLimits(t, &slicesStore{s})
		// A key's steady requests admitted from its slices.
		lim := Limits{RPM: 100_000, TPM: 10_000_000}
		for i := range 400 {
			if i%20 == 0 {
				clock = clock.Add(20 * time.Millisecond)
			}
			d, err := s.Admit(context.Background(), One("key_steady", lim), 100, 0)
			if err != nil || !d.Allowed {
				t.Fatalf("steady request %d: %+v, %v", i, d, err)
			}
		}
		s.mu.Lock()
		held := s.subs[subjectID{key: "key_steady"}].active
		s.mu.Unlock()
		if held == nil || held.reqs == 0 {
			t.Errorf("no slice held for a steady key: %+v", held)
		}
	})
	// The keys landed on more than one master.
	if used := redistest.MastersUsed(t, addrs); used < 2 {
		t.Errorf("keys on %d masters; the test did not exercise the cluster", used)
	}
}

// cluster, while TestSemanticsOnCluster runs, is the Redis Cluster the
// semantic tests run on (forEachStore), instead of Redis and Memory.
var cluster redis.UniversalClient

// TestSemanticsOnCluster runs the semantic tests on a three-master Redis
// Cluster, each deciding in Redis and admitting from slices.
func TestSemanticsOnCluster(t *testing.T) {
	rdb, _ := redistest.ClusterClient(t, 3)
	cluster = rdb
	defer func() { cluster = nil }()
	for name, test := range map[string]func(*testing.T){
		"RequestsPerMinute": TestRequestsPerMinute, "TokensPerMinute": TestTokensPerMinute,
		"TokensPerDayAndRollover": TestTokensPerDayAndRollover, "DeniedConsumesNothing": TestDeniedConsumesNothing,
		"SettlementRefundAndDebt": TestSettlementRefundAndDebt, "ConcurrentAdmissionIsExact": TestConcurrentAdmissionIsExact,
		"PeekReservesNothing": TestPeekReservesNothing, "HugeLimits": TestHugeLimits, "ConcurrencyLeases": TestConcurrencyLeases,
		"BudgetReservesAndSettles": TestBudgetReservesAndSettles, "BudgetHoldExpires": TestBudgetHoldExpires,
		"BudgetConcurrent": TestBudgetConcurrent, "StrictBudget": TestStrictBudget,
		"ProjectLimitsAcrossKeys": TestProjectLimitsAcrossKeys, "ProjectSettlesAndLeases": TestProjectSettlesAndLeases,
	} {
		t.Run(name, test)
	}
}

// onCluster runs f on the cluster, in Redis and with slices, each under a
// prefix of its own.
func onCluster(t *testing.T, f func(t *testing.T, r store, clock *time.Time)) {
	newRedis := func(clock *time.Time) *Redis {
		r := NewRedis(cluster, "obol-"+newLease()+":")
		r.SetAdmissions(redisbatch.NewEager(cluster, 2, 5*time.Second))
		r.now = func() time.Time { return *clock }
		return r
	}
	t.Run("cluster", func(t *testing.T) {
		clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		f(t, &redisStore{newRedis(&clock)}, &clock)
	})
	t.Run("cluster slices", func(t *testing.T) {
		clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		s := NewSlices(newRedis(&clock), SliceOptions{Tick: time.Hour})
		defer s.Close(context.Background())
		f(t, &slicesStore{s}, &clock)
	})
}

func clusterLimits(t *testing.T, r store) {
	ctx := context.Background()
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
				if err := r.Settle(ctx, d.Reservation, 40, 0); err != nil {
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
			if err := r.Settle(ctx, d.Reservation, 40, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
}
