package quota

import (
	"context"
	"fmt"
	"time"
)

// The in-process store's leases and budgets: what requests in flight
// hold, and each level's spend in a month.

type monthKey struct{ month, key string }

// memSpend is the spend hash of the scripts: spent, held by requests in
// flight, and what each lease holds.
type memSpend struct {
	spent, held int64
	holds       map[string]int64
}

// memTATs are a key's GCRA theoretical arrival times, in seconds since
// the scripts' epoch (the same floats, the same rounding).
type memTATs struct{ rpm, tpm float64 }

type dayKey struct{ day, key string }

// startSpend starts the subject's missing spend counters from the ledger,
// outside the locks (the ledger may be a database); one started
// meanwhile is left as it is.
func (m *Memory) startSpend(ctx context.Context, sub Subject) error {
	mo, _ := month(m.now())
	err := m.money.eachSpent(ctx, sub, mo, func(_ int, l level, spent int64) {
		s := m.shard(l.id)
		s.mu.Lock()
		if s.spend[monthKey{mo, l.id}] == nil {
			s.spend[monthKey{mo, l.id}] = &memSpend{spent: spent}
		}
		s.mu.Unlock()
	})
	if err != nil {
		return fmt.Errorf("admit %s: %w", sub.Key, err)
	}
	return nil
}

// spendOK decides the level's budget, after its other limits; false: its
// spend counter is missing. Its shard is locked.
func (ml *memLevel) spendOK(mo string, left time.Duration, cost int64, dry bool) bool {
	if ml.lim.Budget <= 0 {
		return true
	}
	ml.sp = ml.s.spend[monthKey{mo, ml.id}]
	if ml.sp == nil {
		return false
	}
	ml.spent, ml.held = ml.sp.spent, ml.sp.held
	used := ml.spent + ml.held
	if !dry && !ml.hopeless && (used >= ml.lim.Budget || ml.lim.StrictBudget && used+cost > ml.lim.Budget) {
		ml.denied, ml.retry, ml.hopeless = Budget, left.Seconds(), false
	}
	return true
}

// inFlight frees key's expired leases, giving back the money they held,
// and counts the rest; s.mu is held.
func (s *memShard) inFlight(key string, now float64) int64 {
	ls := s.leases[key]
	for l, until := range ls {
		if until <= now {
			delete(ls, l)
			s.release(key, l)
		}
	}
	if len(ls) == 0 {
		delete(s.leases, key)
	}
	return int64(len(ls))
}

// release gives back the money a lease holds in any month; s.mu is held.
func (s *memShard) release(key, lease string) {
	for mk, sp := range s.spend {
		if mk.key != key {
			continue
		}
		if v, ok := sp.holds[lease]; ok {
			sp.held -= v
			delete(sp.holds, lease)
		}
	}
}

// hold records a lease until a time; s.mu is held.
func (s *memShard) hold(key, lease string, until float64) {
	if s.leases[key] == nil {
		s.leases[key] = map[string]float64{}
	}
	s.leases[key][lease] = until
}
