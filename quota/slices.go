package quota

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// Slices is a Store that admits most requests without a round trip to
// Redis: with a request it decides there, a replica takes a slice of the
// subject's allowances (requests, tokens, money, concurrency slots;
// sliceScript sizes it from the demand the replica sees and what is
// left) and admits the next
// requests from it in process. What a slice does not use goes back when
// it ends (Active after it was taken, or at a request it cannot fit);
// what its requests used reaches Redis batched with settlements
// (syncScript). A slice is counted in Redis as used from the moment it is
// taken, so replicas together never admit more than one would; what one
// replica holds unused can refuse another's request until it goes back.
//
// Where a level caps concurrency, a slice holds slots: its requests'
// and some to admit more, given back as its requests end once it no
// longer admits.
type Slices struct {
	r *Redis
	o SliceOptions

	mu   sync.Mutex
	subs map[subjectID]*subjectSlices
	all  map[*slice]struct{} // every slice not yet done: admitting, or with requests in flight
	// flushing serializes flushes: a slice with a sync in flight is
	// skipped, so a flush waits for another's to land and then sends what
	// came after it, and Redis is up to date when flush returns.
	flushing sync.Mutex

	stop chan struct{}
	done chan struct{}

	taken, local metric.Int64Counter
}

// SliceOptions tune Slices.
type SliceOptions struct {
	// Active is how long a slice admits; 0 means one second.
	Active time.Duration
	// Replicas is at least how many replicas share the subjects: a slice
	// takes at most 1/(2·Replicas) of what is left. 0 means 1; where a
	// level's registry holds more slices, those count instead.
	Replicas int
	// Tick is how often what slices' requests used reaches Redis and
	// ended slices are given back; 0 means Active/20.
	Tick time.Duration
	Log  *slog.Logger
	// Meter counts slices taken and requests admitted from them; nil
	// means the global OpenTelemetry meter provider.
	Meter metric.Meter
}

type subjectID struct{ key, project string }

// subjectSlices is one subject's state on this replica: the slice it
// admits from, a take in flight and the requests waiting for it, and the
// rate its requests arrive at.
type subjectSlices struct {
	active *slice
	taking chan struct{} // closed when the take in flight ends
	// waiting is the demand of the requests waiting for the take.
	waiting demand
	// win is the demand since winStart; rate is the demand per Active
	// measured over the last whole window (Active/4 or more).
	win      demand
	winStart time.Time
	rate     demand
	last     time.Time // the last request
}

// demand is requests, their tokens and their cost bounds.
type demand struct{ reqs, tokens, money int64 }

func (d demand) plus(tokens, cost int64) demand {
	return demand{d.reqs + 1, d.tokens + tokens, d.money + cost}
}

// slice is an allowance taken from Redis and its account there. Fields
// but the immutable ones are guarded by Slices.mu.
type slice struct {
	id     string
	sub    Subject
	day    string
	month  string
	until  time.Time // it admits until then, and before its day ends
	limR   bool      // some level limits requests
	limT   bool      // some level limits tokens (TPM or TPD)
	limM   bool      // some level has a budget
	limC   bool      // some level caps concurrency
	base   Decision  // the figures when it was taken
	active bool

	reqs, tokens, money int64 // left to admit from (tokens < 0: a debt)
	inflight            int64 // requests admitted from it, not yet settled
	slots               int64 // concurrency slots it holds (with a cap), its requests' among them
	inflightMoney       int64 // their cost bounds
	used, usedTokens    int64 // admitted locally, for the headers' figures

	// What Redis has not seen yet, and the money Redis holds for it.
	heldRedis          int64
	slotsRedis         int64
	pendCost, pendBack int64
	pendTokens         int64 // > 0 charges (a debt), < 0 gives back
	lastSync           time.Time
	dirty, removed     bool
	// landed is closed when the sync in flight lands (nil: none is):
	// the next waits, so that syncs reach Redis in order.
	landed chan struct{}
}

// NewSlices returns a Store over r that admits from slices; Close gives
// back what they hold.
func NewSlices(r *Redis, o SliceOptions) *Slices {
	if o.Active <= 0 {
		o.Active = time.Second
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.Tick <= 0 {
		o.Tick = o.Active / 20
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = otel.Meter("github.com/obol/obol/quota")
	}
	s := &Slices{r: r, o: o, subs: map[subjectID]*subjectSlices{}, all: map[*slice]struct{}{},
		stop: make(chan struct{}), done: make(chan struct{})}
	s.taken, _ = o.Meter.Int64Counter("obol.quota.slices.taken",
		metric.WithDescription("Allowance slices taken from Redis, each with a request Redis admitted"))
	s.local, _ = o.Meter.Int64Counter("obol.quota.slices.admissions",
		metric.WithDescription("Requests admitted from an allowance slice, without a Redis round trip"))
	go s.keep()
	return s
}

// now is the Redis store's clock: tests move it.
func (s *Slices) now() time.Time {
	if s.r.now != nil {
		return s.r.now()
	}
	return time.Now()
}

// Admit admits from the subject's slice when the request fits in it, and
// otherwise decides in Redis, taking a new slice with the request.
func (s *Slices) Admit(ctx context.Context, sub Subject, tokens, cost int64) (Decision, error) {
	id := subjectID{sub.Key, sub.Project}
	s.mu.Lock()
	ss := s.subs[id]
	if ss == nil {
		ss = &subjectSlices{}
		s.subs[id] = ss
	}
	ss.observe(s.now(), tokens, cost, s.o.Active)
	for {
		now := s.now()
		if sl := ss.active; sl != nil && sl.fits(now, sub, tokens, cost) {
			d := sl.admit(tokens, cost)
			s.mu.Unlock()
			s.local.Add(ctx, 1)
			return d, nil
		}
		if ss.taking == nil {
			break
		}
		wait := ss.taking
		ss.waiting = ss.waiting.plus(tokens, cost)
		s.mu.Unlock()
		var err error
		select {
		case <-wait:
		case <-ctx.Done():
			err = ctx.Err()
		}
		s.mu.Lock()
		ss.waiting = demand{ss.waiting.reqs - 1, ss.waiting.tokens - tokens, ss.waiting.money - cost}
		if err != nil {
			s.mu.Unlock()
			return Decision{}, fmt.Errorf("admit %s: %w", sub.Key, err)
		}
	}
	old := ss.active
	ss.active = nil
	var sync *syncCall
	busy := int64(0)
	if old != nil {
		busy = old.inflight
		sync = s.retire(old)
	}
	want := ss.want(busy)
	ss.taking = make(chan struct{})
	s.mu.Unlock()

	d, sl, err := s.take(ctx, sub, tokens, cost, want, sync)

	s.mu.Lock()
	close(ss.taking)
	ss.taking = nil
	if sl != nil {
		ss.active = sl
		s.all[sl] = struct{}{}
	}
	s.mu.Unlock()
	if sl != nil {
		s.taken.Add(ctx, 1)
	}
	return d, err
}

// observe counts a request into the subject's rate.
func (ss *subjectSlices) observe(now time.Time, tokens, cost int64, active time.Duration) {
	ss.last = now
	if ss.winStart.IsZero() {
		ss.winStart = now
	}
	ss.win = ss.win.plus(tokens, cost)
	if el := now.Sub(ss.winStart); el >= active/4 {
		f := float64(active) / float64(el)
		ss.rate = demand{int64(float64(ss.win.reqs) * f), int64(float64(ss.win.tokens) * f), int64(min(float64(ss.win.money)*f, 1e15))}
		ss.win, ss.winStart = demand{}, now
	}
}

// want is what the next slice should hold: what the requests waiting
// for it need, and what the subject's rate needs for Active. The rate is
// measured over a window of Active/4 at least, so a burst shorter than
// that takes no more than its requests wait for, and a replica does not
// end a burst holding what another replica's requests were refused.
// Slots: as many as wait, and as many as are busy (the slice replaced
// had busy requests in flight: as many will run in this one).
func (ss *subjectSlices) want(busy int64) [4]int64 {
	w := ss.waiting
	return [4]int64{w.reqs + ss.rate.reqs, w.tokens + ss.rate.tokens, w.money + ss.rate.money, w.reqs + busy}
}

// fits reports whether sl may admit the request now.
func (sl *slice) fits(now time.Time, sub Subject, tokens, cost int64) bool {
	return sl.active && now.Before(sl.until) &&
		(!sl.limR || sl.reqs >= 1) && (!sl.limT || sl.tokens >= tokens) && (!sl.limM || sl.money >= cost) &&
		(!sl.limC || sl.inflight < sl.slots) &&
		sub.Limits == sl.sub.Limits && sub.ProjectLimits == sl.sub.ProjectLimits
}

// admit takes the request from sl and returns its decision, with the
// figures of the take less what sl admitted since.
func (sl *slice) admit(tokens, cost int64) Decision {
	sl.reqs, sl.tokens, sl.money = sl.reqs-1, sl.tokens-tokens, sl.money-cost
	sl.inflight, sl.inflightMoney = sl.inflight+1, sl.inflightMoney+cost
	sl.used, sl.usedTokens = sl.used+1, sl.usedTokens+tokens
	d := sl.base
	if d.RequestsRemaining >= 0 { // -1: unlimited
		d.RequestsRemaining = max(d.RequestsRemaining-sl.used, 0)
	}
	if d.TokensRemaining >= 0 {
		d.TokensRemaining = max(d.TokensRemaining-sl.usedTokens, 0)
	}
	d.TokensUsed += sl.usedTokens
	d.DailyUsed += sl.usedTokens
	d.Reservation = &Reservation{Subject: sl.sub, Day: sl.day, Month: sl.month, Tokens: tokens, Cost: cost, slice: sl}
	return d
}

// retire ends sl's admitting: what it did not use goes back with the
// returned sync (nil when Redis needs nothing).
func (s *Slices) retire(sl *slice) *syncCall {
	if sl.active {
		sl.active = false
		sl.pendBack += max(sl.reqs, 0)
		sl.pendTokens -= sl.tokens
		sl.reqs, sl.tokens, sl.money = 0, 0, 0
		sl.dirty = true
	}
	return s.syncOf(sl)
}

// settle folds a settlement of a request sl admitted into its account.
// What the estimate held beyond the actual count goes back to Redis at
// the next sync, for every subject that shares the level; a debt is
// taken from what sl has not used (Redis counted it already) and the
// rest charged at the next sync. A cost bound's rest goes back to Redis
// too (a budget that is not strict admits a bound larger than what it
// has left, which a slice must not pass on); a cost past its bound takes
// from the slice.
func (sl *slice) settle(actual, cost int64, res *Reservation) {
	delta := actual - res.Tokens
	if sl.active && delta > 0 {
		covered := min(delta, max(sl.tokens, 0))
		sl.tokens -= covered
		delta -= covered
	}
	if sl.active {
		sl.money -= max(cost-res.Cost, 0)
	}
	sl.pendTokens += delta
	sl.inflight--
	sl.inflightMoney -= res.Cost
	sl.pendCost += cost
	sl.dirty = true
}

// Peek reports the subject's allowances in Redis, where slices count as
// used.
func (s *Slices) Peek(ctx context.Context, sub Subject) (Decision, error) { return s.r.Peek(ctx, sub) }

// SettleBatch folds the settlements of requests admitted from slices into
// their accounts, which reach Redis every Tick, and writes the rest.
func (s *Slices) SettleBatch(ctx context.Context, batch []Settlement) error {
	var rest []Settlement
	s.mu.Lock()
	for _, st := range batch {
		if st.Res != nil && st.Res.slice != nil {
			st.Res.slice.settle(st.Actual, st.Cost, st.Res)
			continue
		}
		rest = append(rest, st)
	}
	s.mu.Unlock()
	// The folded reach Redis with the next flush: until then Redis holds
	// the requests' bounds and estimates, more than they used.
	return s.r.SettleBatch(ctx, rest)
}

// Renew, LeasesLost, Replay and Ping are Redis's: slices keep their own
// lease members alive.
func (s *Slices) Renew(ctx context.Context, res ...*Reservation) error { return s.r.Renew(ctx, res...) }

// LeasesLost is Redis's.
func (s *Slices) LeasesLost(ctx context.Context) (bool, error) { return s.r.LeasesLost(ctx) }

// Replay is Redis's.
func (s *Slices) Replay(ctx context.Context, used []Settlement) error { return s.r.Replay(ctx, used) }

// Ping is Redis's.
func (s *Slices) Ping(ctx context.Context) error { return s.r.Ping(ctx) }

// keep gives back ended slices and keeps the others' lease members alive
// until Close.
func (s *Slices) keep() {
	defer close(s.done)
	t := time.NewTicker(s.o.Tick)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), max(DefaultTimeout, s.o.Tick))
		if err := s.flush(ctx, false); err != nil {
			s.o.Log.Debug("quota slices not synced; trying again", "err", err)
		}
		cancel()
	}
}

// Close gives back every slice and what its requests used; the requests
// must all be settled first (the Limiter closes before).
func (s *Slices) Close(ctx context.Context) error {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.flush(ctx, true)
}
