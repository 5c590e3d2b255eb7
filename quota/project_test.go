package quota

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestProjectLimitsAcrossKeys: a project's RPM holds across its keys
// whichever key drives it: 60 concurrent requests split over two keys
// under a project RPM of 20 admit exactly 20; a refusal names its level
// and consumes nothing at the other.
func TestProjectLimitsAcrossKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		proj := Limits{RPM: 20}
		subs := []Subject{
			{Key: "key_a", Limits: Limits{RPM: 100}, Project: "acme", ProjectLimits: proj},
			{Key: "key_b", Limits: Limits{RPM: 15}, Project: "acme", ProjectLimits: proj},
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		admitted, byProject := map[string]int64{}, 0
		for i := 0; i < 60; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := r.Admit(ctx, subs[i%2], 10, 0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if d.Allowed {
					admitted[subs[i%2].Key]++
				} else if d.ByProject && d.Denied == Requests {
					byProject++
				}
			}()
		}
		wg.Wait()
		a, b := admitted["key_a"], admitted["key_b"]
		if a+b != 20 || b > 15 || byProject == 0 {
			t.Fatalf("admitted %d + %d, want 20 in all; %d refused by the project", a, b, byProject)
		}
		d, err := r.Peek(ctx, subs[0])
		if err != nil {
			t.Fatal(err)
		}
		if d.Project == nil || d.Project.RequestsRemaining != 0 || d.RequestsRemaining != 100-a {
			t.Errorf("after: key_a %d left (want %d), project %+v", d.RequestsRemaining, 100-a, d.Project)
		}
		if d, _ := r.Peek(ctx, One("key_c", Limits{RPM: 5})); d.Project != nil || d.RequestsRemaining != 5 {
			t.Errorf("a key of no project: %+v", d)
		}
	})
}

// TestProjectSettlesAndLeases: settlement refunds at both levels, a
// project's concurrency cap holds across its keys, and a request too
// large for the project's day is hopeless there.
func TestProjectSettlesAndLeases(t *testing.T) {
	forEachStore(t, func(t *testing.T, r store, clock *time.Time) {
		ctx := context.Background()
		proj := Limits{TPM: 1000, TPD: 5000, Concurrency: 2}
		a := Subject{Key: "key_a", Limits: Limits{TPM: 900}, Project: "beta", ProjectLimits: proj}
		b := Subject{Key: "key_b", Project: "beta", ProjectLimits: proj}
		first, _ := r.Admit(ctx, a, 800, 0)
		if !first.Allowed || !holdsLease(first.Reservation) {
			t.Fatalf("first: %+v", first)
		}
		if d, _ := r.Admit(ctx, b, 800, 0); d.Allowed || !d.ByProject || d.Denied != Tokens {
			t.Fatalf("over the project's TPM through another key: %+v", d)
		}
		if err := r.Settle(ctx, first.Reservation, 100, 0); err != nil {
			t.Fatal(err)
		}
		second, _ := r.Admit(ctx, b, 800, 0)
		// key_a's slice still holds the slot its request used, for its
		// next request (the third below).
		slot := int64(0)
		if _, ok := r.(*slicesStore); ok {
			slot = 1
		}
		if !second.Allowed || second.Project.InFlight != slot {
			t.Fatalf("after the refund, through the other key: %+v", second)
		}
		third, _ := r.Admit(ctx, a, 1, 0)
		if !third.Allowed {
			t.Fatalf("a second request in flight: %+v", third)
		}
		if d, _ := r.Admit(ctx, b, 1, 0); d.Allowed || !d.ByProject || d.Denied != Concurrent {
			t.Fatalf("a third in flight in the project: %+v", d)
		}
		if err := r.(renewer).Renew(ctx, second.Reservation); err != nil {
			t.Fatal(err)
		}
		r.Settle(ctx, second.Reservation, 800, 0)
		r.Settle(ctx, third.Reservation, 1, 0)
		*clock = clock.Add(time.Minute)
		if d, _ := r.Admit(ctx, b, 6000, 0); d.Allowed || !d.ByProject || !d.Hopeless {
			t.Fatalf("more than the project's day: %+v", d)
		}
		d, _ := r.Peek(ctx, a)
		if d.Project.DailyUsed != 100+800+1 || d.DailyUsed != 100+1 || d.Project.InFlight != 0 {
			t.Errorf("the day: key %d, project %+v", d.DailyUsed, d.Project)
		}
	})
}
