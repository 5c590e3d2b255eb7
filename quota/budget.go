package quota

import (
	"context"
	"fmt"
	"time"
)

// Budgets: the month, what is reported of spending, and where a
// counter starts.

// month returns the UTC calendar month of t as YYYYMM and the time until
// it ends.
func month(t time.Time) (string, time.Duration) {
	t = t.UTC()
	end := time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC)
	return t.Format("200601"), end.Sub(t)
}

// Spend is a level's spending this month moving from Before to After
// with a settlement (picodollars), reported so that budget alerts can be
// sent: the store's counter moves atomically, so one settlement, on one
// replica, sees a threshold crossed.
type Spend struct {
	Key     string // the key, or "" for a project's level
	Project string // the project, or "" for a key's level
	Month   string // YYYYMM
	Before  int64
	After   int64
	Budget  int64
	Alerts  []float64
}

// Ledger tells what a key or a project (one of them "") has spent in a
// month (YYYYMM), in picodollars, and the tokens it used on a UTC day
// (YYYYMMDD): a budget's or a day's counter the store does not hold (a
// new month or day, a flushed or restarted Redis) starts from it.
type Ledger interface {
	Spent(ctx context.Context, key, project, month string) (int64, error)
	Used(ctx context.Context, key, project, day string) (int64, error)
}

// spendOf is the Spend of a level, or false when nothing was crossed
// that anyone listens for.
func spendOf(l level, res *Reservation, before, after int64) (Spend, bool) {
	if l.lim.Budget <= 0 || len(l.alerts) == 0 || after <= before {
		return Spend{}, false
	}
	sp := Spend{Month: res.Month, Before: before, After: after, Budget: l.lim.Budget, Alerts: l.alerts}
	if l.project {
		sp.Project = res.Project
	} else {
		sp.Key = res.Key
	}
	return sp, true
}

// Money is what budgets need beyond the counters: the ledger that a
// missing spend counter starts from, and who hears of spending (alerts).
// Without a Ledger a missing counter starts at 0.
type Money struct {
	Ledger  Ledger
	OnSpend func(Spend)
}

// eachSpent reads from the ledger what each of the subject's levels with
// a budget has spent in month, for fn; i is the level's index.
func (m Money) eachSpent(ctx context.Context, sub Subject, month string, fn func(i int, l level, spent int64)) error {
	ls, n := sub.levels()
	for i, l := range ls[:n] {
		if l.lim.Budget <= 0 {
			continue
		}
		v, err := m.spent(ctx, l, sub, month)
		if err != nil {
			return fmt.Errorf("spend of %s in %s from the ledger: %w", l.id, month, err)
		}
		fn(i, l, v)
	}
	return nil
}

// eachUsed reads from the ledger the tokens each of the subject's levels
// with a TPD used on day, for fn; i is the level's index.
func (m Money) eachUsed(ctx context.Context, sub Subject, day string, fn func(i int, used int64)) error {
	ls, n := sub.levels()
	for i, l := range ls[:n] {
		if l.lim.TPD <= 0 {
			continue
		}
		var v int64
		var err error
		switch {
		case m.Ledger == nil:
		case l.project:
			v, err = m.Ledger.Used(ctx, "", sub.Project, day)
		default:
			v, err = m.Ledger.Used(ctx, sub.Key, "", day)
		}
		if err != nil {
			return fmt.Errorf("tokens of %s on %s from the ledger: %w", l.id, day, err)
		}
		fn(i, v)
	}
	return nil
}

func (m Money) spent(ctx context.Context, l level, sub Subject, month string) (int64, error) {
	if m.Ledger == nil {
		return 0, nil
	}
	if l.project {
		return m.Ledger.Spent(ctx, "", sub.Project, month)
	}
	return m.Ledger.Spent(ctx, sub.Key, "", month)
}

func (m Money) report(sp Spend, ok bool) {
	if ok && m.OnSpend != nil {
		m.OnSpend(sp)
	}
}
