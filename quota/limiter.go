package quota

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ErrUnavailable means the shared store could not decide and the limiter
// fails closed.
var ErrUnavailable = errors.New("quota store unavailable")

// Store is a shared store of allowances: Redis.
type Store interface {
	Admit(ctx context.Context, sub Subject, tokens, cost int64) (Decision, error)
	Peek(ctx context.Context, sub Subject) (Decision, error)
	SettleBatch(ctx context.Context, batch []Settlement) error
	Renew(ctx context.Context, res ...*Reservation) error
	LeasesLost(ctx context.Context) (bool, error)
	// Replay adds to the counters the store still holds what requests
	// decided without it used: tokens to their day, cost to the month.
	Replay(ctx context.Context, used []Settlement) error
	Ping(ctx context.Context) error
}

// FailMode is what a Limiter does while its store is unreachable.
type FailMode int

const (
	// FailOpen admits under per-replica local limits.
	FailOpen FailMode = iota
	// FailClosed refuses with ErrUnavailable.
	FailClosed
)

// Options configure a Limiter.
type Options struct {
	// Timeout bounds each store call; 0 means DefaultTimeout.
	Timeout time.Duration
	Mode    FailMode
	// Replicas is how many gateway replicas share the store: failing
	// open, each admits 1/Replicas of a key's limits (rounded up), so that
	// together they stay near the limits. 0 means 1.
	Replicas int
	// ProbeInterval is how often an unreachable store is tried again;
	// 0 means 500 ms.
	ProbeInterval time.Duration
	Log           *slog.Logger
	// Meter records store errors and fail-open admissions; nil means the
	// global OpenTelemetry meter provider.
	Meter metric.Meter
	// Money serves budgets while the limiter decides alone.
	Money Money
}

// DefaultTimeout bounds a store call: a Redis round trip on a LAN is well
// under a millisecond; past this the request should not wait.
const DefaultTimeout = 250 * time.Millisecond

// Limiter decides in a shared Store and rides out its outages. After a
// failed call it stops asking the store (so requests do not each wait for
// a timeout), probes it in the background, and goes back to it when it
// answers. Reservations made locally are settled locally.
type Limiter struct {
	store    Store
	local    *Memory
	opt      Options
	down     atomic.Bool
	mu       sync.Mutex
	since    time.Time
	stop     chan struct{}
	probes   sync.WaitGroup
	closed   bool
	errs     metric.Int64Counter
	failOpen metric.Int64Counter

	// Settlements are queued and written in batches by settler.
	smu     sync.Mutex
	settles []Settlement
	// missed are what requests decided locally used, by subject and day,
	// for the store's counters when it answers again.
	missed   map[missedKey]*Settlement
	skick    chan struct{}
	settling sync.WaitGroup
}

// NewLimiter returns a Limiter over store.
func NewLimiter(store Store, o Options) *Limiter {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 500 * time.Millisecond
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = otel.Meter("github.com/obol/obol/quota")
	}
	l := &Limiter{store: store, local: NewMemory(), opt: o, stop: make(chan struct{}), skick: make(chan struct{}, 1)}
	l.local.SetMoney(o.Money)
	l.local.budgetShare = int64(o.Replicas)
	l.settling.Add(1)
	go l.settler()
	l.errs, _ = o.Meter.Int64Counter("obol.quota.store.errors",
		metric.WithDescription("Quota store calls that failed or timed out"))
	l.failOpen, _ = o.Meter.Int64Counter("obol.quota.fail_open.admissions",
		metric.WithDescription("Requests decided by a replica's local limits while the quota store was unreachable"))
	return l
}

// Ping asks the store whether it answers, for readiness; a failure starts
// an outage as a failed admission would.
func (l *Limiter) Ping(ctx context.Context) error {
	if l.down.Load() {
		return ErrUnavailable
	}
	cctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	if err := l.store.Ping(cctx); err != nil {
		if ctx.Err() == nil {
			l.failed(err)
		}
		return fmt.Errorf("ping quota store: %w", err)
	}
	return nil
}

// fromStore asks the store unless it is known to be down, within the
// timeout. decided is false when the caller must fall back; err is set
// only when the caller itself gave up.
func (l *Limiter) fromStore(ctx context.Context, ask func(context.Context) (Decision, error)) (d Decision, decided bool, err error) {
	if l.down.Load() {
		return Decision{}, false, nil
	}
	cctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	d, err = ask(cctx)
	cancel()
	switch {
	case err == nil:
		return d, true, nil
	case ctx.Err() != nil:
		return Decision{}, true, ctx.Err()
	}
	l.failed(err)
	return Decision{}, false, nil
}

// Admit reserves tokens and a cost bound (picodollars) for the subject
// at every level, all or nothing.
func (l *Limiter) Admit(ctx context.Context, sub Subject, tokens, cost int64) (Decision, error) {
	d, decided, err := l.fromStore(ctx, func(ctx context.Context) (Decision, error) {
		return l.store.Admit(ctx, sub, tokens, cost)
	})
	if err != nil {
		return Decision{}, fmt.Errorf("admit %s: %w", sub.Key, err)
	}
	if !decided {
		if l.opt.Mode == FailClosed {
			return Decision{}, fmt.Errorf("admit %s: %w", sub.Key, ErrUnavailable)
		}
		if d, err = l.local.Admit(ctx, l.share(sub), tokens, cost); err != nil {
			return Decision{}, err
		}
		if d.Reservation != nil {
			d.Reservation.local = true
		}
		l.failOpen.Add(ctx, 1, metric.WithAttributes(attribute.Bool("allowed", d.Allowed)))
	}
	if d.Reservation != nil && ctx.Err() != nil {
		// The caller left while its admission ran: what it reserved comes
		// back at once, not when its lease expires.
		l.Settle(context.WithoutCancel(ctx), d.Reservation, 0, 0)
		return Decision{}, fmt.Errorf("admit %s: %w", sub.Key, ctx.Err())
	}
	return d, nil
}

// Peek reports the subject's allowances without reserving anything.
func (l *Limiter) Peek(ctx context.Context, sub Subject) (Decision, error) {
	d, decided, err := l.fromStore(ctx, func(ctx context.Context) (Decision, error) {
		return l.store.Peek(ctx, sub)
	})
	if err != nil {
		return Decision{}, fmt.Errorf("peek %s: %w", sub.Key, err)
	}
	if decided {
		return d, nil
	}
	if l.opt.Mode == FailClosed {
		return Decision{}, fmt.Errorf("peek %s: %w", sub.Key, ErrUnavailable)
	}
	return l.local.Peek(ctx, l.share(sub))
}

// Settle replaces a reservation's estimate by the actual count and cost
// (picodollars), in the store that made it. For the shared store it queues the settlement and
// returns: settlements are written in the background, many per round
// trip. One the store cannot take is dropped and logged: the key stays
// charged the estimate, which errs on the safe side.
func (l *Limiter) Settle(ctx context.Context, res *Reservation, actual, cost int64) error {
	if res == nil {
		return errors.New("settle: no reservation")
	}
	if res.local {
		l.miss(res, actual, cost)
		return l.local.Settle(ctx, res, actual, cost)
	}
	st := Settlement{Res: res, Actual: actual, Cost: cost}
	if st.moot() {
		return nil
	}
	l.smu.Lock()
	l.settles = append(l.settles, st)
	l.smu.Unlock()
	select {
	case l.skick <- struct{}{}:
	default:
	}
	return nil
}

// Renew extends the reservations' leases, each in the store that made
// it; a lease Redis cannot renew now is left to expire or to be renewed
// next time.
func (l *Limiter) Renew(ctx context.Context, res ...*Reservation) error {
	var shared []*Reservation
	for _, rs := range res {
		switch {
		case rs == nil || rs.Lease == "":
		case rs.local:
			l.local.Renew(ctx, rs)
		default:
			shared = append(shared, rs)
		}
	}
	if len(shared) == 0 {
		return nil
	}
	// Many leases share the round trip: more time than one decision.
	ctx, cancel := context.WithTimeout(ctx, max(l.opt.Timeout, LeaseTTL/6))
	defer cancel()
	return l.store.Renew(ctx, shared...)
}

// LeasesLost reports whether the shared store lost the leases this
// replica holds there, so that they are renewed (registered again) now.
// A store known to be down has lost nothing yet that renewing could mend.
func (l *Limiter) LeasesLost(ctx context.Context) bool {
	if l.down.Load() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	lost, err := l.store.LeasesLost(ctx)
	return err == nil && lost
}

// settler writes queued settlements until Close, then the last of them.
func (l *Limiter) settler() {
	defer l.settling.Done()
	for {
		var closing bool
		select {
		case <-l.skick:
		case <-l.stop:
			closing = true
		}
		l.smu.Lock()
		batch := l.settles
		l.settles = nil
		l.smu.Unlock()
		if len(batch) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), l.opt.Timeout)
			if err := l.store.SettleBatch(ctx, batch); err != nil {
				l.failed(err)
				l.opt.Log.Warn("quota settlements lost; the keys stay charged their estimates", "settlements", len(batch), "err", err)
			}
			cancel()
		}
		if closing {
			return
		}
	}
}

// share is a replica's part of every level's limits, while it decides
// alone.
func (l *Limiter) share(sub Subject) Subject {
	n := int64(l.opt.Replicas)
	div := func(v int64) int64 {
		if v <= 0 {
			return v
		}
		return (v + n - 1) / n
	}
	part := func(lim Limits) Limits {
		// A budget is divided by the local store: each replica's counter
		// starts from the ledger's spend of every replica, and it may
		// spend 1/Replicas of what was left.
		return Limits{RPM: div(lim.RPM), TPM: div(lim.TPM), TPD: div(lim.TPD), Concurrency: div(lim.Concurrency),
			Budget: lim.Budget, StrictBudget: lim.StrictBudget}
	}
	sub.Limits, sub.ProjectLimits = part(sub.Limits), part(sub.ProjectLimits)
	return sub
}

// failed counts a store error and, on the first of an outage, logs it and
// starts probing the store.
func (l *Limiter) failed(err error) {
	l.errs.Add(context.Background(), 1)
	if !l.down.CompareAndSwap(false, true) {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.since = time.Now()
	l.local.forgetSpend() // each outage starts from the ledger's spend
	mode := "failing open: admitting under per-replica local limits"
	if l.opt.Mode == FailClosed {
		mode = "failing closed: refusing requests with 503"
	}
	l.opt.Log.Error("quota store unavailable; "+mode, "err", err)
	l.probes.Add(1)
	go l.probe()
}

func (l *Limiter) probe() {
	defer l.probes.Done()
	t := time.NewTicker(l.opt.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.opt.Timeout)
		err := l.store.Ping(ctx)
		cancel()
		if err == nil {
			// What was used meanwhile reaches the counters Redis kept
			// before it decides again.
			err = l.replay()
		}
		if err != nil {
			continue
		}
		l.mu.Lock()
		since := l.since
		l.mu.Unlock()
		l.opt.Log.Info("quota store answering again", "outage", time.Since(since).Round(time.Millisecond).String())
		l.down.Store(false)
		return
	}
}

// Close writes the settlements still queued, stops probing the store and
// closes it when it holds anything of its own (Slices).
func (l *Limiter) Close() {
	l.mu.Lock()
	first := !l.closed
	if first {
		l.closed = true
		close(l.stop)
	}
	l.mu.Unlock()
	l.settling.Wait()
	l.probes.Wait()
	if c, ok := l.store.(interface{ Close(context.Context) error }); ok && first {
		ctx, cancel := context.WithTimeout(context.Background(), max(l.opt.Timeout, time.Second))
		defer cancel()
		if err := c.Close(ctx); err != nil {
			l.opt.Log.Warn("quota slices not given back; Redis frees them when their leases expire", "err", err)
		}
	}
}
