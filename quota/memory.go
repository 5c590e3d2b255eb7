package quota

import (
	"context"
	"errors"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Memory admits and settles in process, with the Redis scripts' semantics
// (the same GCRA arithmetic, the same all-or-nothing decision), exact and
// safe for concurrent use. It serves one replica: alone as the embedded
// store, or as a replica's local fallback while Redis is unreachable.
type Memory struct {
	now   func() time.Time
	seed  maphash.Seed
	money Money
	// budgetShare divides what budgets leave among the replicas that
	// decide alone (a Limiter's fallback); 0 or 1: the whole of it.
	budgetShare int64
	shards      [32]memShard
}

type memShard struct {
	mu    sync.Mutex
	tats  map[string]*memTATs
	daily map[dayKey]int64
	dirty map[dayKey]struct{}
	today string
	// leases are the leases held, by key: lease → expiry (the scripts'
	// seconds).
	leases map[string]map[string]float64
	// spend is each level's money in a month.
	spend map[monthKey]*memSpend
}

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	m := &Memory{now: time.Now, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].tats = map[string]*memTATs{}
		m.shards[i].daily = map[dayKey]int64{}
		m.shards[i].dirty = map[dayKey]struct{}{}
		m.shards[i].leases = map[string]map[string]float64{}
		m.shards[i].spend = map[monthKey]*memSpend{}
	}
	return m
}

// SetMoney gives budgets their ledger and listener.
func (m *Memory) SetMoney(money Money) { m.money = money }

func (m *Memory) shard(key string) *memShard { return &m.shards[m.shardIndex(key)] }

func (m *Memory) shardIndex(key string) int {
	return int(maphash.String(m.seed, key) % uint64(len(m.shards)))
}

// gcra is the scripts' gcra: whether n units fit a limit per 60 s whose
// theoretical arrival time is tat, the new tat, the allowance left, the
// wait until n would fit, and the amount in use before.
func gcra(tat, now float64, limit, n int64) (ok bool, newTAT, remaining, wait, used float64) {
	interval := 60 / float64(limit)
	tat = math.Max(tat, now)
	used = (tat - now) / interval
	newTAT = tat + interval*float64(n)
	diff := now - (newTAT - 60)
	if diff < 0 {
		return false, tat, float64(limit) - used, -diff, used
	}
	return true, newTAT, diff / interval, 0, used
}

// Admit reserves tokens and a cost bound (picodollars) for the subject
// at every level, all or nothing.
func (m *Memory) Admit(ctx context.Context, sub Subject, tokens, cost int64) (Decision, error) {
	if d, ok := m.admit(sub, tokens, cost, false); ok {
		return d, nil
	}
	if err := m.startSpend(ctx, sub); err != nil {
		return Decision{}, err
	}
	d, _ := m.admit(sub, tokens, cost, false)
	return d, nil
}

// Peek reports the subject's allowances without reserving anything.
func (m *Memory) Peek(ctx context.Context, sub Subject) (Decision, error) {
	if d, ok := m.admit(sub, 0, 0, true); ok {
		return d, nil
	}
	if err := m.startSpend(ctx, sub); err != nil {
		return Decision{}, err
	}
	d, _ := m.admit(sub, 0, 0, true)
	return d, nil
}

// memLevel is one level's state during an admission, as the script's
// decide holds it.
type memLevel struct {
	level
	s                        *memShard
	st                       *memTATs
	rOK, tOK                 bool
	rTAT, rRem, rWait        float64
	tTAT, tRem, tWait, tUsed float64
	dUsed, inFlight          int64
	sp                       *memSpend
	spent, held              int64
	denied                   Limit
	retry                    float64
	hopeless                 bool
}

// shardsOf are the indexes of the shards of the levels, in order, without
// repeats: the order every caller locks them in.
func (m *Memory) shardsOf(ls []level) (idx [2]int, n int) {
	for _, l := range ls {
		i := m.shardIndex(l.id)
		if n == 1 && idx[0] == i {
			continue
		}
		idx[n] = i
		n++
	}
	if n == 2 && idx[1] < idx[0] {
		idx[0], idx[1] = idx[1], idx[0]
	}
	return idx, n
}

func (m *Memory) lock(idx []int) {
	for _, i := range idx {
		m.shards[i].mu.Lock()
	}
}

func (m *Memory) unlock(idx []int) {
	for _, i := range idx {
		m.shards[i].mu.Unlock()
	}
}

// admit decides; ok is false, and nothing is written, when a budget's
// spend counter must be started first.
func (m *Memory) admit(sub Subject, tokens, cost int64, dry bool) (Decision, bool) {
	t := m.now()
	now := float64(t.UnixMicro()-epoch*1e6) / 1e6
	d, left := day(t)
	mo, moLeft := month(t)
	ls, n := sub.levels()
	idx, ns := m.shardsOf(ls[:n])
	m.lock(idx[:ns])
	defer m.unlock(idx[:ns])
	reqs := int64(1)
	if dry {
		reqs = 0
	}
	var states [2]memLevel
	worst := -1
	for i, l := range ls[:n] {
		states[i] = m.decide(l, now, d, left, reqs, tokens, dry)
		ml, w := &states[i], &states[max(worst, 0)]
		if !ml.spendOK(mo, moLeft, cost, m.budgetShare, dry) {
			return Decision{}, false
		}
		if ml.denied != None && (worst < 0 || (ml.hopeless && !w.hopeless) || (ml.hopeless == w.hopeless && ml.retry > w.retry)) {
			worst = i
		}
	}
	lease := ""
	if worst < 0 && !dry {
		if sub.leased() {
			lease = newLease()
		}
		for i := range states[:n] {
			states[i].take(now, d, tokens, cost, lease)
		}
	}
	dec := states[0].figures(now)
	if n > 1 {
		p := states[1].figures(now)
		dec.Project = &p
	}
	if worst >= 0 {
		w := &states[worst]
		dec.Denied, dec.ByProject = w.denied, worst == 1
		dec.RetryAfter, dec.Hopeless = time.Duration(w.retry*float64(time.Second)), w.hopeless
	}
	dec.Allowed = dec.Denied == None
	if dec.Allowed && !dry {
		dec.Reservation = &Reservation{Subject: sub, Day: d, Month: mo, Tokens: tokens, Cost: cost, Lease: lease}
	}
	return dec, true
}

// decide checks one level; its shard is locked.
func (m *Memory) decide(l level, now float64, d string, left time.Duration, reqs, tokens int64, dry bool) memLevel {
	s := m.shard(l.id)
	s.rollover(d)
	ml := memLevel{level: l, s: s, st: s.tats[l.id], rOK: true, rTAT: now, rRem: -1, tOK: true, tTAT: now, tRem: -1}
	if ml.st == nil {
		ml.st = &memTATs{}
	}
	lim := l.lim
	if lim.RPM > 0 {
		ml.rOK, ml.rTAT, ml.rRem, ml.rWait, _ = gcra(ml.st.rpm, now, lim.RPM, reqs)
	}
	if lim.TPM > 0 {
		ml.tOK, ml.tTAT, ml.tRem, ml.tWait, ml.tUsed = gcra(ml.st.tpm, now, lim.TPM, tokens)
	}
	ml.dUsed = s.daily[dayKey{d, l.id}]
	if !ml.rOK {
		ml.denied, ml.retry = Requests, ml.rWait
	}
	if !ml.tOK && (ml.denied == None || ml.tWait > ml.retry || tokens > lim.TPM) {
		ml.denied, ml.retry = Tokens, ml.tWait
		ml.hopeless = tokens > lim.TPM
	}
	if lim.TPD > 0 && ml.dUsed+tokens > lim.TPD {
		ml.denied, ml.retry = DailyTokens, left.Seconds()
		ml.hopeless = ml.hopeless || tokens > lim.TPD
	}
	if l.leased() {
		ml.inFlight = s.inFlight(l.id, now)
	}
	if lim.Concurrency > 0 {
		if ml.denied == None && !dry && ml.inFlight >= lim.Concurrency {
			ml.denied, ml.retry = Concurrent, 1
		}
	}
	return ml
}

// take writes the level's reservation; its shard is locked.
func (ml *memLevel) take(now float64, d string, tokens, cost int64, lease string) {
	s, lim := ml.s, ml.lim
	if lim.RPM > 0 {
		ml.st.rpm = ml.rTAT
	}
	if lim.TPM > 0 && ml.tTAT > now {
		ml.st.tpm = ml.tTAT
	}
	if s.tats[ml.id] == nil {
		s.tats[ml.id] = ml.st
	}
	if tokens > 0 {
		dk := dayKey{d, ml.id}
		s.daily[dk] = ml.dUsed + tokens
		s.dirty[dk] = struct{}{}
	}
	if ml.leased() {
		s.hold(ml.id, lease, now+LeaseTTL.Seconds())
	}
	if ml.sp != nil && cost > 0 {
		ml.sp.held += cost
		if ml.sp.holds == nil {
			ml.sp.holds = map[string]int64{}
		}
		ml.sp.holds[lease] = cost
	}
}

// whole is an allowance left, in whole units: floored, but not below a
// count float arithmetic left a hair short (100 - 13 requests is
// 86.99999… in seconds of GCRA).
func whole(v float64) int64 {
	if v < 0 {
		return int64(v) // -1 is unlimited; a debt truncates as before
	}
	return int64(v + 1e-6)
}

// figures are the level's numbers for the headers.
func (ml *memLevel) figures(now float64) Decision {
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	return Decision{
		RequestsRemaining: whole(ml.rRem),
		RequestsReset:     sec(math.Max(ml.rTAT-now, 0)),
		TokensUsed:        int64(ml.tUsed + 0.5),
		TokensRemaining:   whole(ml.tRem),
		TokensReset:       sec(math.Max(ml.tTAT-now, 0)),
		DailyUsed:         ml.dUsed,
		InFlight:          ml.inFlight,
		Spent:             ml.spent,
		Held:              ml.held,
	}
}

// Renew extends the reservations' leases by LeaseTTL at every level that
// still holds them.
func (m *Memory) Renew(_ context.Context, res ...*Reservation) error {
	now := float64(m.now().UnixMicro()-epoch*1e6) / 1e6
	for _, rs := range res {
		if rs == nil || rs.Lease == "" {
			continue
		}
		m.eachLevel(rs, func(s *memShard, l level) {
			if _, ok := s.leases[l.id][rs.Lease]; ok {
				s.leases[l.id][rs.Lease] = now + LeaseTTL.Seconds()
			}
		})
	}
	return nil
}

// eachLevel runs fn on each of res's levels with its shard, all the
// shards locked.
func (m *Memory) eachLevel(res *Reservation, fn func(s *memShard, l level)) {
	ls, n := res.levels()
	idx, ns := m.shardsOf(ls[:n])
	m.lock(idx[:ns])
	defer m.unlock(idx[:ns])
	for _, l := range ls[:n] {
		fn(m.shard(l.id), l)
	}
}

// rollover forgets the daily counters of days before yesterday; s.mu is held.
func (s *memShard) rollover(d string) {
	if s.today == d {
		return
	}
	s.today = d
	for k := range s.spend {
		if k.month < d[:6] {
			delete(s.spend, k)
		}
	}
	for k := range s.daily {
		if k.day < yesterday(d) {
			delete(s.daily, k)
			delete(s.dirty, k)
		}
	}
}

func yesterday(d string) string {
	t, err := time.Parse("20060102", d)
	if err != nil {
		return d
	}
	return t.AddDate(0, 0, -1).Format("20060102")
}

// Settle replaces a reservation's estimate by the actual token count and
// cost at every level, and releases its lease, as the settle script does.
func (m *Memory) Settle(_ context.Context, res *Reservation, actual, cost int64) error {
	if res == nil {
		return errors.New("settle: no reservation")
	}
	delta := actual - res.Tokens
	now := float64(m.now().UnixMicro()-epoch*1e6) / 1e6
	var spends [2]Spend
	var ns int
	m.eachLevel(res, func(s *memShard, l level) {
		s.settle(l, res, delta, now)
		if sp := s.spend[monthKey{res.Month, l.id}]; sp != nil && cost != 0 {
			before := sp.spent
			sp.spent += cost
			if x, ok := spendOf(l, res, before, sp.spent); ok {
				spends[ns], ns = x, ns+1
			}
		}
	})
	for _, sp := range spends[:ns] {
		m.money.report(sp, true)
	}
	return nil
}

// settle settles one level's tokens and lease; s.mu is held.
func (s *memShard) settle(l level, res *Reservation, delta int64, now float64) {
	if res.Lease != "" {
		delete(s.leases[l.id], res.Lease)
		if sp := s.spend[monthKey{res.Month, l.id}]; sp != nil {
			if v, ok := sp.holds[res.Lease]; ok {
				sp.held -= v
				delete(sp.holds, res.Lease)
			}
		}
	}
	if delta == 0 {
		return
	}
	if l.lim.TPM > 0 {
		st := s.tats[l.id]
		if st == nil {
			st = &memTATs{}
			s.tats[l.id] = st
		}
		st.tpm = math.Max(math.Max(st.tpm, now)+(60/float64(l.lim.TPM))*float64(delta), now)
	}
	dk := dayKey{res.Day, l.id}
	if v, ok := s.daily[dk]; ok || delta > 0 {
		s.daily[dk] = max(v+delta, 0)
		s.dirty[dk] = struct{}{}
	}
}

// dirtyDaily returns the daily counters changed since the last call.
func (m *Memory) dirtyDaily() map[dayKey]int64 {
	out := map[dayKey]int64{}
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		for k := range s.dirty {
			out[k] = s.daily[k]
		}
		clear(s.dirty)
		s.mu.Unlock()
	}
	return out
}

// loadDaily sets a daily counter, as read back from disk.
func (m *Memory) loadDaily(d, key string, n int64) {
	s := m.shard(key)
	s.mu.Lock()
	s.daily[dayKey{d, key}] = n
	s.mu.Unlock()
}
