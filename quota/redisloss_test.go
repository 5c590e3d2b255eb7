package quota

import (
	"context"
	"testing"
	"time"
)

// TestDayRebuiltFromLedger: a day's token counter Redis does not hold is
// started from the ledger's tokens of the day before the request is
// decided, at the key's level and the project's: after a FLUSHALL a key
// that spent its TPD stays refused, and the first request of a day
// starts the count from what the ledger has.
func TestDayRebuiltFromLedger(t *testing.T) {
	today := time.Now().UTC().Format("20060102")
	ledger := ledgerStub{"key_d||" + today: 480, "|proj_d|" + today: 900}
	env := newLimiterEnvMoney(t, FailClosed, 1, Money{Ledger: ledger})
	ctx := context.Background()
	for _, sub := range []Subject{
		{Key: "key_d", Limits: Limits{TPD: 500}},
		{Key: "key_e", Project: "proj_d", ProjectLimits: Limits{TPD: 1000}},
	} {
		used := func(d Decision) int64 {
			if sub.Project != "" {
				return d.Project.DailyUsed
			}
			return d.DailyUsed
		}
		for round := range 2 {
			d, err := env.lim.Admit(ctx, sub, 101, 0)
			if err != nil || d.Allowed || d.Denied != DailyTokens || used(d) != ledger[sub.Key+"||"+today]+ledger["|"+sub.Project+"|"+today] {
				t.Fatalf("%s, round %d: %+v %v; want refused on TPD, the ledger's tokens of today used", sub.Key, round, d, err)
			}
			if d, _ := env.lim.Admit(ctx, sub, 20, 0); !d.Allowed {
				t.Fatalf("%s: 20 more tokens: %+v", sub.Key, d)
			} else if err := env.lim.Settle(ctx, d.Reservation, 0, 0); err != nil {
				t.Fatal(err)
			}
			waitSettled(t, env.lim, sub, used, ledger[sub.Key+"||"+today]+ledger["|"+sub.Project+"|"+today])
			env.srv.Flush()
		}
	}
}

// waitSettled waits for the limiter's queued settlements to reach Redis.
func waitSettled(t *testing.T, l *Limiter, sub Subject, used func(Decision) int64, want int64) {
	t.Helper()
	for i := 0; ; i++ {
		d, err := l.Peek(context.Background(), sub)
		if err == nil && used(d) == want {
			return
		}
		if i == 500 {
			t.Fatalf("tokens today %d, want %d", used(d), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestLeasesRegisteredAgain: a Redis that lost every lease (FLUSHALL) is
// noticed by the replica that holds them (LeasesLost), and its next
// renewal registers them again with the money they hold: the
// concurrency cap and the budget count the requests in flight again.
func TestLeasesRegisteredAgain(t *testing.T) {
	mo := time.Now().UTC().Format("200601")
	env := newLimiterEnvMoney(t, FailClosed, 1, Money{Ledger: ledgerStub{"key_l||" + mo: 100}})
	ctx := context.Background()
	sub := Subject{Key: "key_l", Limits: Limits{Concurrency: 2, Budget: 1000}}
	var held []*Reservation
	for range 2 {
		d, err := env.lim.Admit(ctx, sub, 1, 300)
		if err != nil || !d.Allowed {
			t.Fatalf("%+v %v", d, err)
		}
		held = append(held, d.Reservation)
	}
	if err := env.lim.Renew(ctx, held...); err != nil {
		t.Fatal(err)
	}
	if env.lim.LeasesLost(ctx) {
		t.Fatal("leases lost before any flush")
	}
	env.srv.Flush()
	if !env.lim.LeasesLost(ctx) {
		t.Fatal("a flushed Redis: leases not known lost")
	}
	if d, _ := env.lim.Peek(ctx, sub); d.InFlight != 0 {
		t.Fatalf("flushed, before the renewal: %d in flight", d.InFlight)
	}
	if err := env.lim.Renew(ctx, held...); err != nil {
		t.Fatal(err)
	}
	d, err := env.lim.Admit(ctx, sub, 1, 300)
	if err != nil || d.Allowed || d.Denied != Concurrent || d.InFlight != 2 || d.Spent != 100 || d.Held != 600 {
		t.Fatalf("after the renewal: %+v %v; want 2 in flight, 100 spent, 600 held", d, err)
	}
	if err := env.lim.Renew(ctx, held...); err != nil || env.lim.LeasesLost(ctx) {
		t.Fatal(err)
	}
	for _, r := range held {
		if err := env.lim.Settle(ctx, r, 1, 200); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		d, _ := env.lim.Peek(ctx, sub)
		if d.InFlight == 0 && d.Held == 0 && d.Spent == 500 {
			break
		}
		if i == 500 {
			t.Fatalf("after settling: %+v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFailOpenBudgetShare: with Redis down and failing open, each of
// three replicas may spend a third of what the ledger says a budget has
// left, its own holds counted, not the whole of it.
func TestFailOpenBudgetShare(t *testing.T) {
	mo := time.Now().UTC().Format("200601")
	env := newLimiterEnvMoney(t, FailOpen, 3, Money{Ledger: ledgerStub{"key_f||" + mo: 400}})
	ctx := context.Background()
	sub := Subject{Key: "key_f", Limits: Limits{Budget: 1000}}
	env.srv.Stop()
	first, err := env.lim.Admit(ctx, sub, 1, 150)
	if err != nil || !first.Allowed || first.Spent != 400 {
		t.Fatalf("400 of 1000 spent, a third of the 600 left is this replica's: %+v %v", first, err)
	}
	if d, _ := env.lim.Admit(ctx, sub, 1, 10); !d.Allowed {
		t.Fatalf("550 of this replica's 600: %+v", d)
	} else if err := env.lim.Settle(ctx, d.Reservation, 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := env.lim.Settle(ctx, first.Reservation, 1, 190); err != nil {
		t.Fatal(err)
	}
	if d, _ := env.lim.Admit(ctx, sub, 1, 1); d.Allowed || d.Denied != Budget || d.Spent != 600 {
		t.Fatalf("600 spent, this replica's share: %+v", d)
	}
}

// TestOutageUseReplayed: what requests decided without Redis used (a
// Redis paused, its counters kept) reaches its day's and month's counters
// when it answers again, before it decides again.
func TestOutageUseReplayed(t *testing.T) {
	env := newLimiterEnvMoney(t, FailOpen, 1, Money{Ledger: ledgerStub{}})
	ctx := context.Background()
	sub := Subject{Key: "key_o", Limits: Limits{TPD: 10_000, Budget: 10_000}}
	settle := func(tokens, cost int64) {
		t.Helper()
		d, err := env.lim.Admit(ctx, sub, 10, 50)
		if err != nil || !d.Allowed {
			t.Fatalf("%+v %v", d, err)
		}
		if err := env.lim.Settle(ctx, d.Reservation, tokens, cost); err != nil {
			t.Fatal(err)
		}
	}
	settle(100, 100)
	waitSettled(t, env.lim, sub, func(d Decision) int64 { return d.DailyUsed }, 100)
	env.srv.Pause()
	settle(200, 300) // decided locally: the store times out
	if !env.lim.down.Load() {
		t.Fatal("the paused store was not noticed")
	}
	env.srv.Resume()
	waitAvailable(t, env.lim)
	// The admission that timed out reached the paused Redis and ran when
	// it resumed: it stays charged its estimate, 10 tokens, once.
	d, err := env.lim.Peek(ctx, sub)
	if err != nil || d.DailyUsed != 300+10 || d.Spent != 400 {
		t.Fatalf("after the outage: %d tokens today, %d spent; want 310 and 400 (%v)", d.DailyUsed, d.Spent, err)
	}
}
