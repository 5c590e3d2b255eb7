package quota

import (
	"context"
	"time"
)

// What requests decided without the shared store used, kept to be given
// to it when it answers again: a Redis that was unreachable but kept its
// counters would otherwise not know of it.

// missedKey is what a local settlement counts under in the store.
type missedKey struct{ key, project, day, month string }

// maxMissed bounds the subjects whose local use is kept for the store;
// past it, more are left to the ledger, which starts a counter the store
// lost.
const maxMissed = 100_000

// miss keeps what a request decided locally used, for the store.
func (l *Limiter) miss(res *Reservation, actual, cost int64) {
	if actual <= 0 && cost <= 0 {
		return
	}
	k := missedKey{res.Key, res.Project, res.Day, res.Month}
	l.smu.Lock()
	defer l.smu.Unlock()
	if l.missed == nil {
		l.missed = map[missedKey]*Settlement{}
	}
	m := l.missed[k]
	if m == nil {
		if len(l.missed) >= maxMissed {
			return
		}
		r := *res
		r.Lease, r.local = "", false
		m = &Settlement{Res: &r}
		l.missed[k] = m
	}
	m.Actual += actual
	m.Cost += cost
}

// replay gives the store what requests decided without it used.
func (l *Limiter) replay() error {
	l.smu.Lock()
	missed := l.missed
	l.missed = nil
	l.smu.Unlock()
	if len(missed) == 0 {
		return nil
	}
	used := make([]Settlement, 0, len(missed))
	for _, m := range missed {
		used = append(used, *m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), max(l.opt.Timeout, time.Second))
	defer cancel()
	if err := l.store.Replay(ctx, used); err != nil {
		l.smu.Lock()
		for k, m := range missed { // kept for the next try
			if l.missed == nil {
				l.missed = map[missedKey]*Settlement{}
			}
			if cur := l.missed[k]; cur != nil {
				cur.Actual += m.Actual
				cur.Cost += m.Cost
			} else {
				l.missed[k] = m
			}
		}
		l.smu.Unlock()
		return err
	}
	return nil
}
