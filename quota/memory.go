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
	now    func() time.Time
	seed   maphash.Seed
	shards [32]memShard
}

type memShard struct {
	mu    sync.Mutex
	tats  map[string]*memTATs
	daily map[dayKey]int64
	dirty map[dayKey]struct{}
	today string
	// leases are the concurrency leases held, by key: lease → expiry (the
	// scripts' seconds).
	leases map[string]map[string]float64
}

// memTATs are a key's GCRA theoretical arrival times, in seconds since
// the scripts' epoch (the same floats, the same rounding).
type memTATs struct{ rpm, tpm float64 }

type dayKey struct{ day, key string }

// NewMemory returns an empty in-process store.
func NewMemory() *Memory {
	m := &Memory{now: time.Now, seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].tats = map[string]*memTATs{}
		m.shards[i].daily = map[dayKey]int64{}
		m.shards[i].dirty = map[dayKey]struct{}{}
		m.shards[i].leases = map[string]map[string]float64{}
	}
	return m
}

func (m *Memory) shard(key string) *memShard {
	return &m.shards[maphash.String(m.seed, key)%uint64(len(m.shards))]
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

// Admit reserves tokens for key against lim, all or nothing.
func (m *Memory) Admit(_ context.Context, key string, lim Limits, tokens int64) (Decision, error) {
	return m.admit(key, lim, tokens, false), nil
}

// Peek reports key's allowances without reserving anything.
func (m *Memory) Peek(_ context.Context, key string, lim Limits) (Decision, error) {
	return m.admit(key, lim, 0, true), nil
}

func (m *Memory) admit(key string, lim Limits, tokens int64, dry bool) Decision {
	t := m.now()
	now := float64(t.UnixMicro()-epoch*1e6) / 1e6
	d, left := day(t)
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rollover(d)
	st := s.tats[key]
	if st == nil {
		st = &memTATs{}
	}
	reqs := int64(1)
	if dry {
		reqs = 0
	}

	var dec Decision
	rOK, rTAT, rRem, rWait := true, now, -1.0, 0.0
	tOK, tTAT, tRem, tWait, tUsed := true, now, -1.0, 0.0, 0.0
	if lim.RPM > 0 {
		rOK, rTAT, rRem, rWait, _ = gcra(st.rpm, now, lim.RPM, reqs)
	}
	if lim.TPM > 0 {
		tOK, tTAT, tRem, tWait, tUsed = gcra(st.tpm, now, lim.TPM, tokens)
	}
	dk := dayKey{d, key}
	dUsed := s.daily[dk]
	retry := 0.0
	if !rOK {
		dec.Denied, retry = Requests, rWait
	}
	if !tOK && (dec.Denied == None || tWait > retry || tokens > lim.TPM) {
		dec.Denied, retry = Tokens, tWait
		dec.Hopeless = tokens > lim.TPM
	}
	if lim.TPD > 0 && dUsed+tokens > lim.TPD {
		dec.Denied, retry = DailyTokens, left.Seconds()
		dec.Hopeless = dec.Hopeless || tokens > lim.TPD
	}
	if lim.Concurrency > 0 {
		dec.InFlight = s.inFlight(key, now)
		if dec.Denied == None && !dry && dec.InFlight >= lim.Concurrency {
			dec.Denied, retry = Concurrent, 1
		}
	}
	lease := ""
	if dec.Denied == None && !dry {
		if lim.RPM > 0 {
			st.rpm = rTAT
		}
		if lim.TPM > 0 && tTAT > now {
			st.tpm = tTAT
		}
		if s.tats[key] == nil {
			s.tats[key] = st
		}
		if tokens > 0 {
			s.daily[dk] = dUsed + tokens
			s.dirty[dk] = struct{}{}
		}
		if lim.Concurrency > 0 {
			lease = newLease()
			s.hold(key, lease, now+LeaseTTL.Seconds())
		}
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	dec.Allowed = dec.Denied == None
	dec.RetryAfter = sec(retry)
	dec.RequestsRemaining = int64(rRem)
	dec.RequestsReset = sec(math.Max(rTAT-now, 0))
	dec.TokensUsed = int64(tUsed + 0.5)
	dec.TokensRemaining = int64(tRem)
	dec.TokensReset = sec(math.Max(tTAT-now, 0))
	dec.DailyUsed = dUsed
	if dec.Allowed && !dry {
		dec.Reservation = &Reservation{Key: key, Day: d, Tokens: tokens, Limits: lim, Lease: lease}
	}
	return dec
}

// inFlight frees key's expired leases and counts the rest; s.mu is held.
func (s *memShard) inFlight(key string, now float64) int64 {
	ls := s.leases[key]
	for l, until := range ls {
		if until <= now {
			delete(ls, l)
		}
	}
	if len(ls) == 0 {
		delete(s.leases, key)
	}
	return int64(len(ls))
}

// hold records a lease until a time; s.mu is held.
func (s *memShard) hold(key, lease string, until float64) {
	if s.leases[key] == nil {
		s.leases[key] = map[string]float64{}
	}
	s.leases[key][lease] = until
}

// Renew extends res's lease by LeaseTTL, if it is still held.
func (m *Memory) Renew(_ context.Context, res *Reservation) error {
	if res == nil || res.Lease == "" {
		return nil
	}
	now := float64(m.now().UnixMicro()-epoch*1e6) / 1e6
	s := m.shard(res.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.leases[res.Key][res.Lease]; ok {
		s.leases[res.Key][res.Lease] = now + LeaseTTL.Seconds()
	}
	return nil
}

// rollover forgets the daily counters of days before yesterday; s.mu is held.
func (s *memShard) rollover(d string) {
	if s.today == d {
		return
	}
	s.today = d
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

// Settle replaces a reservation's estimate by the actual token count, as
// the settle script does.
func (m *Memory) Settle(_ context.Context, res *Reservation, actual int64) error {
	if res == nil {
		return errors.New("settle: no reservation")
	}
	delta := actual - res.Tokens
	now := float64(m.now().UnixMicro()-epoch*1e6) / 1e6
	s := m.shard(res.Key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if res.Lease != "" {
		delete(s.leases[res.Key], res.Lease)
	}
	if delta == 0 {
		return nil
	}
	if res.Limits.TPM > 0 {
		st := s.tats[res.Key]
		if st == nil {
			st = &memTATs{}
			s.tats[res.Key] = st
		}
		st.tpm = math.Max(math.Max(st.tpm, now)+(60/float64(res.Limits.TPM))*float64(delta), now)
	}
	dk := dayKey{res.Day, res.Key}
	if v, ok := s.daily[dk]; ok || delta > 0 {
		s.daily[dk] = max(v+delta, 0)
		s.dirty[dk] = struct{}{}
	}
	return nil
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
