package quota

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/redisbatch"
	"github.com/obol/obol/internal/redistest"
)

// replicasOn returns n Slices sharing one Redis and one prefix, as n
// gateway replicas do, on a clock the test moves; their Redis commands
// are counted in calls.
func replicasOn(t *testing.T, n int, calls *atomic.Int64) ([]*Slices, *time.Time) {
	t.Helper()
	rdb, prefix := redistest.Shared(t)
	if calls != nil {
		rdb.AddHook(countHook{calls})
	}
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	var out []*Slices
	for range n {
		r := NewRedis(rdb, prefix)
		r.SetAdmissions(redisbatch.NewEager(rdb, 2, 5*time.Second))
		r.now = func() time.Time { return clock }
		s := NewSlices(r, SliceOptions{Replicas: n, Tick: time.Hour})
		t.Cleanup(func() { s.Close(context.Background()) })
		out = append(out, s)
	}
	return out, &clock
}

// countHook counts the scripts sent to Redis.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.count(cmd)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, c := range cmds {
			h.count(c)
		}
		return next(ctx, cmds)
	}
}
func (h countHook) count(c redis.Cmder) {
	if n := c.Name(); n == "evalsha" || n == "eval" {
		h.n.Add(1)
	}
}

// burst sends per concurrent requests to each store and returns the
// reservations admitted; settle, when set, settles each at once.
func burst(t *testing.T, stores []store, per int, sub func(i int) Subject, tokens, cost int64, settle func(store, *Reservation)) int {
	t.Helper()
	var wg sync.WaitGroup
	var admitted atomic.Int64
	for _, st := range stores {
		for i := range per {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := st.Admit(context.Background(), sub(i), tokens, cost)
				if err != nil {
					t.Error(err)
					return
				}
				if d.Allowed {
					admitted.Add(1)
					if settle != nil {
						settle(st, d.Reservation)
					}
				}
			}()
		}
	}
	wg.Wait()
	return int(admitted.Load())
}

// TestSlicesAdmitWhatOneReplicaWould: bursts of 300 concurrent requests
// over three replicas admitting from slices admit exactly what one
// replica deciding each request in Redis admits, against every limit,
// for keys and projects, whether the requests settle during the burst
// or not.
func TestSlicesAdmitWhatOneReplicaWould(t *testing.T) {
	tests := []struct {
		name         string
		lim, project Limits
		tokens, cost int64
		settled      bool // each settles at once, for a third of its estimate and its whole bound
		// used, when set, is the tokens limit the settled requests' use
		// must fit: how many one replica admits then depends on when
		// each settlement lands, so that is the bound.
		used int64
	}{
		{name: "rpm", lim: Limits{RPM: 100}, tokens: 10},
		{name: "rpm above demand per replica", lim: Limits{RPM: 250}, tokens: 10, settled: true},
		{name: "tpm", lim: Limits{TPM: 5000}, tokens: 30},
		{name: "tpm settled", lim: Limits{TPM: 2000}, tokens: 30, settled: true, used: 2000},
		{name: "tpd", lim: Limits{TPD: 4000}, tokens: 30},
		{name: "tpd settled", lim: Limits{TPD: 2000}, tokens: 30, settled: true, used: 2000},
		{name: "budget", lim: Limits{Budget: 1_000_000}, tokens: 10, cost: 7_000, settled: true},
		{name: "strict budget", lim: Limits{Budget: 1_000_000, StrictBudget: true}, tokens: 10, cost: 7_000},
		{name: "concurrency", lim: Limits{Concurrency: 40}, tokens: 10},
		{name: "project concurrency", lim: Limits{Concurrency: 30}, project: Limits{Concurrency: 45, Budget: 5_000_000}, tokens: 10, cost: 1000},
		{name: "project", lim: Limits{RPM: 1000}, project: Limits{RPM: 150, TPM: 20_000, Budget: 2_000_000}, tokens: 40, cost: 9_000, settled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := func(i int) Subject {
				s := One([]string{"key_a", "key_b"}[i%2], tt.lim)
				if tt.project != (Limits{}) {
					s.Project, s.ProjectLimits = "acme", tt.project
				}
				return s
			}
			if tt.project == (Limits{}) {
				sub = func(int) Subject { return One("key_a", tt.lim) }
			}
			var settle func(store, *Reservation)
			if tt.settled {
				settle = func(st store, res *Reservation) {
					if err := st.Settle(context.Background(), res, res.Tokens/3, res.Cost); err != nil {
						t.Error(err)
					}
				}
			}
			reps, _ := replicasOn(t, 3, nil)
			stores := []store{&slicesStore{reps[0]}, &slicesStore{reps[1]}, &slicesStore{reps[2]}}
			got := burst(t, stores, 100, sub, tt.tokens, tt.cost, settle)
			if tt.used > 0 {
				// Every admitted request used a third of its estimate, and
				// the last one admitted needed its whole estimate to fit.
				if most := (tt.used-tt.tokens)/(tt.tokens/3) + 1; got > int(most) || got < int(tt.used/tt.tokens) {
					t.Fatalf("three replicas with slices admitted %d, want %d to %d", got, tt.used/tt.tokens, most)
				}
				return
			}
			one, _ := testRedis(t)
			want := burst(t, []store{one}, 300, sub, tt.tokens, tt.cost, settle)
			if got != want || want == 0 || want == 300 {
				t.Fatalf("three replicas with slices admitted %d, one replica %d (of 300)", got, want)
			}
		})
	}
}

// TestSlicesSparesRoundTrips: a replica's steady requests are admitted
// from slices, most without a script call, and settled in batches; what
// it admitted and used is in Redis once it closes.
func TestSlicesSparesRoundTrips(t *testing.T) {
	var calls atomic.Int64
	reps, clock := replicasOn(t, 1, &calls)
	s := reps[0]
	ctx := context.Background()
	sub := One("key_a", Limits{RPM: 100_000, TPM: 10_000_000, TPD: 100_000_000, Budget: 1e12})
	s.r.SetMoney(Money{Ledger: ledgerStub{}})
	const n = 2000
	for i := range n {
		if i == n/4 {
			calls.Store(0) // its rate is known by now (SliceOptions.Active/4)
		}
		if i%100 == 0 {
			*clock = clock.Add(100 * time.Millisecond) // 1,000 requests a second
		}
		d, err := s.Admit(ctx, sub, 100, 1000)
		if err != nil || !d.Allowed {
			t.Fatalf("request %d: %+v %v", i, d, err)
		}
		if err := s.SettleBatch(ctx, []Settlement{{Res: d.Reservation, Actual: 40, Cost: 300}}); err != nil {
			t.Fatal(err)
		}
	}
	if c := calls.Load(); c > n/50 {
		t.Errorf("%d requests made %d script calls, want at most %d", 3*n/4, c, n/50)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := s.r.Peek(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	if p.Spent != n*300 || p.Held != 0 || p.DailyUsed != n*40 {
		t.Errorf("after close: spent %d held %d used %d; want %d, 0, %d", p.Spent, p.Held, p.DailyUsed, n*300, n*40)
	}
}

// TestSlicesGivenBack: what one replica's slice does not use refuses
// another's requests only until it ends (Active), and then admits them;
// a debt a request ran up is charged when its slice ends.
func TestSlicesGivenBack(t *testing.T) {
	reps, clock := replicasOn(t, 2, nil)
	a, b := reps[0], reps[1]
	ctx := context.Background()
	sub := One("key_a", Limits{RPM: 600, TPM: 100_000})
	// a sees 40 requests in a second, then two more: its rate.
	for range 40 {
		*clock = clock.Add(25 * time.Millisecond)
		if d, _ := a.Admit(ctx, sub, 10, 0); !d.Allowed {
			t.Fatal("a refused")
		}
	}
	d, _ := a.Admit(ctx, sub, 10, 0)
	a.mu.Lock()
	sl := a.subs[subjectID{key: "key_a"}].active
	held, tokens := sl.reqs, sl.tokens
	a.mu.Unlock()
	if held < 10 {
		t.Fatalf("a's slice holds %d requests, want its rate's", held)
	}
	// A debt: the request used 5,000 tokens, not 10.
	if err := a.SettleBatch(ctx, []Settlement{{Res: d.Reservation, Actual: 5000}}); err != nil {
		t.Fatal(err)
	}
	before, _ := b.Peek(ctx, sub)
	*clock = clock.Add(a.o.Active)
	if err := a.flush(ctx, false); err != nil {
		t.Fatal(err)
	}
	after, _ := b.Peek(ctx, sub)
	if got := after.RequestsRemaining - before.RequestsRemaining; got < held {
		t.Errorf("given back %d requests, want %d or more", got, held)
	}
	// The slice's unused tokens came back and the debt (4,990 tokens
	// more than estimated) was charged, less a second's refill (1,667).
	if got, want := after.TokensUsed, max(before.TokensUsed-1667, 0)+4990-tokens; got < want-1 || got > want+1 {
		t.Errorf("tokens in use %d (before: %d), want %d", got, before.TokensUsed, want)
	}
}

// TestSlicesOfADeadReplica: a replica that dies holding slices (money
// and slots among them) frees them when their leases expire, as a
// request's lease does.
func TestSlicesOfADeadReplica(t *testing.T) {
	reps, clock := replicasOn(t, 2, nil)
	a, b := reps[0], reps[1]
	ctx := context.Background()
	sub := One("key_a", Limits{Concurrency: 50, Budget: 1_000_000})
	a.r.SetMoney(Money{Ledger: ledgerStub{}})
	for range 20 {
		*clock = clock.Add(20 * time.Millisecond)
		if d, _ := a.Admit(ctx, sub, 10, 100); !d.Allowed {
			t.Fatal("refused")
		}
	}
	held, _ := b.Peek(ctx, sub)
	if held.InFlight < 20 || held.Held < 2000 {
		t.Fatalf("while a lives: %d in flight, %d held", held.InFlight, held.Held)
	}
	close(a.stop) // a dies: nothing more reaches Redis from it
	<-a.done
	*clock = clock.Add(LeaseTTL + time.Second)
	p, _ := b.Peek(ctx, sub)
	if p.InFlight != 0 || p.Held != 0 {
		t.Errorf("after its leases expired: %d in flight, %d held", p.InFlight, p.Held)
	}
	if d, _ := b.Admit(ctx, sub, 10, 100); !d.Allowed {
		t.Errorf("another replica refused: %+v", d)
	}
}

// TestSlicesFigures: a request admitted from a slice carries the figures
// of the slice's take less what it admitted since, and an unlimited
// allowance stays unlimited (-1, no headers).
func TestSlicesFigures(t *testing.T) {
	reps, clock := replicasOn(t, 1, nil)
	s := reps[0]
	ctx := context.Background()
	for _, tt := range []struct {
		lim      Limits
		reqsLeft func(i int) int64
	}{
		{Limits{TPM: 1_000_000}, func(int) int64 { return -1 }},
		{Limits{RPM: 10_000}, nil},
	} {
		sub := One("key_figures", tt.lim)
		var last, local int64 = -2, 0
		for i := range 400 {
			if i%40 == 0 {
				*clock = clock.Add(40 * time.Millisecond)
			}
			d, err := s.Admit(ctx, sub, 10, 0)
			if err != nil || !d.Allowed {
				t.Fatalf("%+v: request %d: %+v %v", tt.lim, i, d, err)
			}
			if d.Reservation.slice != nil && d.Reservation.slice.used > 1 {
				local++
			}
			switch {
			case tt.reqsLeft != nil && d.RequestsRemaining != tt.reqsLeft(i):
				t.Fatalf("%+v: request %d: %d requests left", tt.lim, i, d.RequestsRemaining)
			case tt.reqsLeft == nil && last >= 0 && d.RequestsRemaining > last+7: // 40 ms refills 6.7
				t.Fatalf("%+v: request %d: %d requests left after %d", tt.lim, i, d.RequestsRemaining, last)
			}
			last = d.RequestsRemaining
		}
		if local == 0 {
			t.Errorf("%+v: no request was admitted from a slice", tt.lim)
		}
	}
}
