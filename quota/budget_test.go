package quota

import (
	"context"
	"sync"
	"testing"
	"time"
)

// ledgerStub is what a ledger reports as spent: the budget tests need a
// ledger's answer, not its storage (usage has the real ones).
type ledgerStub map[string]int64

func (l ledgerStub) Spent(_ context.Context, key, project, month string) (int64, error) {
	return l[key+"|"+project+"|"+month], nil
}

// Used is what the stub holds for a day (key|project|YYYYMMDD).
func (l ledgerStub) Used(_ context.Context, key, project, day string) (int64, error) {
	return l[key+"|"+project+"|"+day], nil
}

// TestBudgetReservesAndSettles: a request is admitted while spent plus
// held is below the budget and holds its cost bound; settlement replaces
// the bound by the cost; the refusal is the project's, consumes nothing,
// and the spend a counter starts from is the ledger's.
func TestBudgetReservesAndSettles(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		mo := clock.Format("200601")
		var spends []Spend
		var mu sync.Mutex
		r.SetMoney(Money{Ledger: ledgerStub{"|acme|" + mo: 100}, OnSpend: func(s Spend) {
			mu.Lock()
			spends = append(spends, s)
			mu.Unlock()
		}})
		sub := Subject{Key: "key_a", Project: "acme", ProjectLimits: Limits{Budget: 1000}, ProjectAlerts: []float64{0.5}}
		first, _ := r.Admit(ctx, sub, 10, 600)
		second, _ := r.Admit(ctx, sub, 10, 600)
		if !first.Allowed || !second.Allowed || second.Project.Spent != 100 || second.Project.Held != 600 {
			t.Fatalf("under the budget: %+v / %+v", first, second.Project)
		}
		d, _ := r.Admit(ctx, sub, 10, 1)
		if d.Allowed || d.Denied != Budget || !d.ByProject || d.Project.Spent+d.Project.Held != 1300 {
			t.Fatalf("100 spent + 1200 held of 1000: %+v %+v", d, d.Project)
		}
		if err := r.Settle(ctx, first.Reservation, 5, 250); err != nil {
			t.Fatal(err)
		}
		p, _ := r.Peek(ctx, sub)
		if p.Project.Spent != 350 || p.Project.Held != 600 {
			t.Fatalf("after settling 250: spent %d held %d, want 350 and 600", p.Project.Spent, p.Project.Held)
		}
		if d, _ := r.Admit(ctx, sub, 10, 5000); !d.Allowed {
			t.Fatalf("950 of 1000: a request is admitted whatever its bound: %+v", d)
		} else if err := r.Settle(ctx, d.Reservation, 10, 0); err != nil {
			t.Fatal(err)
		}
		if err := r.Settle(ctx, second.Reservation, 5, 700); err != nil {
			t.Fatal(err)
		}
		if d, _ := r.Admit(ctx, sub, 10, 1); d.Allowed || d.Denied != Budget || d.RetryAfter <= 0 || d.Project.Spent != 1050 {
			t.Fatalf("1050 spent of 1000: %+v %+v", d, d.Project)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(spends) != 2 || spends[1].Before != 350 || spends[1].After != 1050 || spends[1].Project != "acme" || spends[1].Budget != 1000 {
			t.Errorf("spends reported: %+v", spends)
		}
	})
}

// TestBudgetHoldExpires: a request never settled (its replica died)
// gives back the money it held when its lease expires; a new month
// starts a new counter from the ledger.
func TestBudgetHoldExpires(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		r.SetMoney(Money{Ledger: ledgerStub{}})
		sub := One("key_b", Limits{Budget: 1000})
		if d, _ := r.Admit(ctx, sub, 10, 2000); !d.Allowed {
			t.Fatalf("first: %+v", d)
		}
		if d, _ := r.Admit(ctx, sub, 10, 1); d.Allowed || d.Denied != Budget {
			t.Fatalf("held past the budget: %+v", d)
		}
		*clock = clock.Add(LeaseTTL + time.Second)
		d, _ := r.Admit(ctx, sub, 10, 1)
		if !d.Allowed || d.Held != 0 {
			t.Fatalf("after the lease expired: %+v", d)
		}
		if err := r.Settle(ctx, d.Reservation, 10, 1000); err != nil {
			t.Fatal(err)
		}
		if d, _ := r.Admit(ctx, sub, 10, 1); d.Allowed {
			t.Fatalf("spent: %+v", d)
		}
		next := time.Date(clock.Year(), clock.Month()+1, 1, 0, 0, 1, 0, time.UTC)
		*clock = next
		if d, _ := r.Admit(ctx, sub, 10, 1); !d.Allowed || d.Spent != 0 {
			t.Fatalf("a new month: %+v", d)
		}
	})
}

// TestBudgetConcurrent: 50 concurrent requests against a budget of 10
// requests' cost, each settled at its bound: the spend ends at exactly
// the budget; none is admitted once it is reached.
func TestBudgetConcurrent(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		r.SetMoney(Money{})
		sub := Subject{Key: "key_c", Project: "p", ProjectLimits: Limits{Budget: 1000}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted := 0
		for i := 0; i < 50; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := r.Admit(ctx, sub, 1, 100)
				if err != nil || !d.Allowed {
					return
				}
				mu.Lock()
				admitted++
				mu.Unlock()
				r.Settle(ctx, d.Reservation, 1, 100)
			}()
		}
		wg.Wait()
		p, _ := r.Peek(ctx, sub)
		if admitted != 10 || p.Project.Spent != 1000 || p.Project.Held != 0 {
			t.Fatalf("admitted %d, spent %d, held %d; want 10, 1000, 0", admitted, p.Project.Spent, p.Project.Held)
		}
	})
}

// TestStrictBudget: a strict budget admits a request only while spent,
// held and its own bound fit in it, at the key's level and the
// project's, in every store; a denied request holds nothing.
func TestStrictBudget(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		for _, sub := range []Subject{
			{Key: "key_s", Limits: Limits{Budget: 100, StrictBudget: true}},
			{Key: "key_p", Project: "strict", ProjectLimits: Limits{Budget: 100, StrictBudget: true}},
		} {
			level := func(d Decision) Decision {
				if sub.Project != "" {
					return *d.Project
				}
				return d
			}
			first, _ := r.Admit(ctx, sub, 1, 60)
			if !first.Allowed {
				t.Fatalf("%s: 60 of 100: %+v", sub.Key, first)
			}
			if d, _ := r.Admit(ctx, sub, 1, 41); d.Allowed || d.Denied != Budget || level(d).Held != 60 {
				t.Fatalf("%s: 60 held + 41 of 100: %+v", sub.Key, d)
			}
			if d, _ := r.Admit(ctx, sub, 1, 40); !d.Allowed {
				t.Fatalf("%s: 60 held + 40 of 100: %+v", sub.Key, d)
			} else if err := r.Settle(ctx, d.Reservation, 1, 40); err != nil {
				t.Fatal(err)
			}
			if err := r.Settle(ctx, first.Reservation, 1, 30); err != nil {
				t.Fatal(err)
			}
			if d, _ := r.Admit(ctx, sub, 1, 31); d.Allowed || level(d).Spent != 70 || level(d).Held != 0 {
				t.Fatalf("%s: 70 spent + 31 of 100: %+v", sub.Key, level(d))
			}
			if d, _ := r.Admit(ctx, sub, 1, 30); !d.Allowed {
				t.Fatalf("%s: 70 spent + 30 of 100: %+v", sub.Key, d)
			}
		}
	})
}
