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
	// start is the ledger's spend the counter started from.
	start int64
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
			s.spend[monthKey{mo, l.id}] = &memSpend{spent: spent, start: spent}
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
// share is the level's budget divided (share > 1) among replicas that
// decide alone: what the ledger had spent when the counter started, and
// 1/share of what was left.
func (ml *memLevel) spendOK(mo string, left time.Duration, cost, share int64, dry bool) bool {
	if ml.lim.Budget <= 0 {
		return true
	}
	ml.sp = ml.s.spend[monthKey{mo, ml.id}]
	if ml.sp == nil {
		return false
	}
	ml.spent, ml.held = ml.sp.spent, ml.sp.held
	used, budget := ml.spent+ml.held, ml.lim.Budget
	if share > 1 {
		budget = ml.sp.start + max(budget-ml.sp.start, 0)/share
	}
	if !dry && !ml.hopeless && (used >= budget || ml.lim.StrictBudget && used+cost > budget) {
		ml.denied, ml.retry, ml.hopeless = Budget, left.Seconds(), false
	}
	return true
}

// forgetSpend drops every spend counter, so that each starts again from
// the ledger: a replica that begins to decide alone starts from what
// every replica spent.
func (m *Memory) forgetSpend() {
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		clear(s.spend)
		s.mu.Unlock()
	}
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
