package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// store is what the semantic tests exercise, in Redis and in process.
type store interface {
	Admit(ctx context.Context, sub Subject, tokens, cost int64) (Decision, error)
	Peek(ctx context.Context, sub Subject) (Decision, error)
	Settle(ctx context.Context, res *Reservation, actual, cost int64) error
	Renew(ctx context.Context, res ...*Reservation) error
	SetMoney(Money)
}

// forEachStore runs f against real Redis, Redis with slices and Memory,
// each with a clock the test moves.
func forEachStore(t *testing.T, f func(t *testing.T, r store, clock *time.Time)) {
	if cluster != nil {
		onCluster(t, f)
		return
	}
	t.Run("redis", func(t *testing.T) {
		r, clock := testRedis(t)
		f(t, r, clock)
	})
	t.Run("slices", func(t *testing.T) {
		r, clock := testSlices(t, 1)
		f(t, r, clock)
	})
	t.Run("memory", func(t *testing.T) {
		m := NewMemory()
		clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		m.now = func() time.Time { return clock }
		f(t, m, &clock)
	})
}

func admit(t *testing.T, r store, lim Limits, tokens int64) Decision {
	t.Helper()
	d, err := r.Admit(context.Background(), One("key_a", lim), tokens, 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// holdsLease reports whether an admitted request holds a lease in the
// store: its own, or its slice's.
func holdsLease(res *Reservation) bool { return res.Lease != "" || res.slice != nil }

func near(got, want time.Duration) bool {
	diff := got - want
	return diff > -time.Millisecond && diff < time.Millisecond
}

func TestRequestsPerMinute(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{RPM: 3}
		for i := 0; i < 3; i++ {
			if d := admit(t, r, lim, 10); !d.Allowed || d.RequestsRemaining != int64(2-i) {
				t.Fatalf("request %d: %+v", i, d)
			}
		}
		d := admit(t, r, lim, 10)
		if d.Allowed || d.Denied != Requests || !near(d.RetryAfter, 20*time.Second) || d.Hopeless {
			t.Fatalf("4th request: %+v", d)
		}
		*clock = clock.Add(20 * time.Second) // one request refilled
		if d := admit(t, r, lim, 10); !d.Allowed {
			t.Fatalf("after the retry delay: %+v", d)
		}
		if d := admit(t, r, lim, 10); d.Allowed {
			t.Fatalf("only one request refilled: %+v", d)
		}
	})
}

func TestTokensPerMinute(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{TPM: 1000}
		admit(t, r, lim, 400)
		admit(t, r, lim, 400)
		d := admit(t, r, lim, 400)
		// 800 used, 200 left: 200 more tokens refill in 200 × 60 ms.
		if d.Allowed || d.Denied != Tokens || d.TokensUsed != 800 || !near(d.RetryAfter, 12*time.Second) {
			t.Fatalf("third request: %+v", d)
		}
		*clock = clock.Add(d.RetryAfter)
		if d := admit(t, r, lim, 400); !d.Allowed || d.TokensRemaining != 0 || !near(d.TokensReset, time.Minute) {
			t.Fatalf("after the retry delay: %+v", d)
		}
		if d := admit(t, r, lim, 1001); d.Allowed || !d.Hopeless || d.Denied != Tokens {
			t.Fatalf("larger than TPM: %+v", d)
		}
	})
}

func TestTokensPerDayAndRollover(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{TPD: 1000}
		*clock = time.Date(2026, 11, 22, 23, 59, 0, 0, time.UTC)
		if d := admit(t, r, lim, 600); !d.Allowed {
			t.Fatal(d)
		}
		d := admit(t, r, lim, 500)
		if d.Allowed || d.Denied != DailyTokens || d.DailyUsed != 600 || d.Hopeless || !near(d.RetryAfter, time.Minute) {
			t.Fatalf("over TPD: %+v", d)
		}
		*clock = time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC) // a new UTC day
		if d := admit(t, r, lim, 500); !d.Allowed || d.DailyUsed != 0 {
			t.Fatalf("after midnight UTC: %+v", d)
		}
		if d := admit(t, r, lim, 1001); !d.Hopeless {
			t.Fatalf("larger than TPD: %+v", d)
		}
	})
}

// TestDeniedConsumesNothing: a request refused by one limit leaves the
// others untouched.
func TestDeniedConsumesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{RPM: 10, TPM: 1000, TPD: 500}
		if d := admit(t, r, lim, 600); d.Allowed || d.Denied != DailyTokens {
			t.Fatalf("%+v", d)
		}
		d := admit(t, r, lim, 100)
		if !d.Allowed || d.RequestsRemaining != 9 || d.TokensUsed != 0 || d.DailyUsed != 0 {
			t.Fatalf("the denied request consumed something: %+v", d)
		}
	})
}

func TestSettlementRefundAndDebt(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		lim := Limits{TPM: 1000, TPD: 10000}
		d := admit(t, r, lim, 800)
		if err := r.Settle(ctx, d.Reservation, 200, 0); err != nil {
			t.Fatal(err)
		}
		if d := admit(t, r, lim, 800); !d.Allowed || d.TokensUsed != 200 || d.DailyUsed != 200 {
			t.Fatalf("after a refund of 600: %+v", d)
		}
		*clock = clock.Add(time.Hour) // everything refilled
		d = admit(t, r, lim, 100)
		if err := r.Settle(ctx, d.Reservation, 1500, 0); err != nil {
			t.Fatal(err)
		}
		// 1500 in use against 1000: a debt of 500, plus the 1 requested.
		d = admit(t, r, lim, 1)
		if d.Allowed || d.Denied != Tokens || d.TokensUsed != 1500 || !near(d.RetryAfter, 501*60*time.Millisecond) {
			t.Fatalf("with a debt: %+v", d)
		}
		*clock = clock.Add(d.RetryAfter)
		if d := admit(t, r, lim, 1); !d.Allowed {
			t.Fatalf("after the debt is waited out: %+v", d)
		}
		// A refund never makes the allowance more than full.
		*clock = clock.Add(time.Hour)
		d = admit(t, r, lim, 10)
		r.Settle(ctx, d.Reservation, 0, 0)
		r.Settle(ctx, &Reservation{Subject: One("key_a", lim), Day: d.Reservation.Day, Tokens: 500}, 0, 0)
		if d := admit(t, r, lim, 1001); d.Allowed {
			t.Fatalf("a refund lifted TPM above its limit: %+v", d)
		}
	})
}

// TestConcurrentAdmissionIsExact: many goroutines on one key admit exactly
// the limit (the clock is fixed, so nothing refills meanwhile).
func TestConcurrentAdmissionIsExact(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{RPM: 50, TPM: 100000, TPD: 1000000}
		var admitted atomic.Int64
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 40; i++ {
					d, err := r.Admit(context.Background(), One("key_a", lim), 100, 0)
					if err != nil {
						t.Error(err)
						return
					}
					if d.Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if got := admitted.Load(); got != 50 {
			t.Errorf("admitted %d of 320, want exactly 50", got)
		}
	})
}

func TestPeekReservesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{RPM: 5, TPM: 1000, TPD: 5000}
		admit(t, r, lim, 300)
		for i := 0; i < 3; i++ {
			d, err := r.Peek(context.Background(), One("key_a", lim))
			if err != nil {
				t.Fatal(err)
			}
			if !d.Allowed || d.Reservation != nil || d.RequestsRemaining != 4 || d.TokensUsed != 300 ||
				d.TokensRemaining != 700 || d.DailyUsed != 300 {
				t.Fatalf("peek %d: %+v", i, d)
			}
		}
	})
}

// TestHugeLimits: limits so large that one request moves the tat by less
// than float precision still admit (and never ask Redis for SET EX 0).
func TestHugeLimits(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{RPM: 1 << 40, TPM: 1 << 50, TPD: 1 << 50}
		for i := 0; i < 3; i++ {
			d := admit(t, r, lim, 1000)
			if !d.Allowed {
				t.Fatalf("%+v", d)
			}
			if err := r.Settle(context.Background(), d.Reservation, 1, 0); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// TestConcurrencyLeases: a cap on requests in flight; settling frees a
// lease; a lease never settled (a replica that died) expires on its own;
// a renewed one does not; a refused request holds nothing.
func TestConcurrencyLeases(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		lim := Limits{Concurrency: 2}
		a, b := admit(t, r, lim, 1), admit(t, r, lim, 1)
		if !a.Allowed || !b.Allowed || !holdsLease(a.Reservation) || b.InFlight != 1 {
			t.Fatalf("two within the cap: %+v %+v", a, b)
		}
		c := admit(t, r, lim, 1)
		if c.Allowed || c.Denied != Concurrent || c.RetryAfter != time.Second || c.InFlight != 2 {
			t.Fatalf("the third: %+v", c)
		}
		if err := r.Settle(context.Background(), a.Reservation, 1, 0); err != nil {
			t.Fatal(err)
		}
		if d := admit(t, r, lim, 1); !d.Allowed {
			t.Fatalf("after a settlement: %+v", d)
		}
		if _, ok := r.(*slicesStore); ok {
			return // a live replica keeps its slices' leases: TestSlicesOfADeadReplica
		}
		// b and the last are never settled; b is renewed.
		*clock = clock.Add(LeaseTTL / 2)
		if err := r.(renewer).Renew(context.Background(), b.Reservation); err != nil {
			t.Fatal(err)
		}
		*clock = clock.Add(LeaseTTL/2 + time.Second)
		if d := admit(t, r, lim, 1); !d.Allowed || d.InFlight != 1 {
			t.Fatalf("after the unrenewed lease expired: %+v", d)
		}
		if d := admit(t, r, lim, 1); d.Allowed {
			t.Fatalf("the renewed lease was freed: %+v", d)
		}
	})
}

type renewer interface {
	Renew(ctx context.Context, res ...*Reservation) error
}
