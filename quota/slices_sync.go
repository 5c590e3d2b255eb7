package quota

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// The Redis side of Slices: taking a slice with a request, and bringing
// each slice's account in Redis up to date.

// syncCall is a sync of one slice, and what to undo if it fails.
type syncCall struct {
	sl   *slice
	call scriptCall
	// sent are the pending figures it carries.
	cost, back, tokens, held, prevHeld int64
	slots, prevSlots                   int64
	final, renew                       bool
}

// syncOf takes sl's pending figures into a sync, or returns nil when
// Redis has nothing to learn (nor a member to renew). s.mu is held.
func (s *Slices) syncOf(sl *slice) *syncCall {
	now := s.now()
	done := !sl.active && sl.inflight == 0
	stale := now.Sub(sl.lastSync) >= LeaseTTL/3
	if sl.removed || sl.landed != nil || !(sl.dirty || stale || done) {
		return nil
	}
	sl.landed = make(chan struct{})
	c := &syncCall{sl: sl, cost: sl.pendCost, back: sl.pendBack, tokens: sl.pendTokens,
		prevHeld: sl.heldRedis, held: max(sl.money, 0) + sl.inflightMoney, final: done,
		prevSlots: sl.slotsRedis, slots: sl.slots, renew: stale}
	if !sl.active {
		c.held = sl.inflightMoney
		if sl.limC {
			sl.slots = max(sl.inflight, 1)
			c.slots = sl.slots
		}
	}
	sl.slotsRedis = c.slots
	sl.pendCost, sl.pendBack, sl.pendTokens = 0, 0, 0
	sl.heldRedis, sl.dirty, sl.lastSync = c.held, false, now
	if done {
		sl.removed = true
		delete(s.all, sl)
	}
	c.call = s.r.syncArgs(sl, c)
	return c
}

// failed puts back what a sync that may not have run carried: costs and
// debts, which counted twice only refuse early, never what it gave back,
// which counted twice would admit more than allowed.
func (s *Slices) failed(c *syncCall) {
	sl := c.sl
	sl.pendCost += c.cost
	sl.pendTokens += max(c.tokens, 0)
	sl.heldRedis = c.prevHeld
	sl.slotsRedis = c.prevSlots
	sl.dirty = true
	if c.final {
		sl.removed = false
		s.all[sl] = struct{}{}
	}
}

// landedSync ends sl's sync in flight; s.mu is held.
func (sl *slice) landedSync() {
	close(sl.landed)
	sl.landed = nil
}

// flush retires the slices past their time (all of them when closing) and
// sends every sync due, in one pipeline. A slice whose sync is in flight
// (a take's) is waited for and synced after it, so that Redis has what
// was settled before flush was called when it returns.
func (s *Slices) flush(ctx context.Context, closing bool) error {
	s.flushing.Lock()
	defer s.flushing.Unlock()
	for range 3 {
		calls, waits := s.due(closing)
		if err := s.send(ctx, calls); err != nil || len(waits) == 0 {
			return err
		}
		for _, w := range waits {
			select {
			case <-w:
			case <-ctx.Done():
				return fmt.Errorf("sync quota slices: %w", ctx.Err())
			}
		}
	}
	return nil
}

// due takes the syncs due now and the slices whose sync is in flight, and
// forgets subjects long idle.
func (s *Slices) due(closing bool) (calls []*syncCall, waits []chan struct{}) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	for sl := range s.all {
		var c *syncCall
		if sl.active && (closing || !now.Before(sl.until)) {
			if ss := s.subs[subjectID{sl.sub.Key, sl.sub.Project}]; ss != nil && ss.active == sl {
				ss.active = nil
			}
			c = s.retire(sl)
		} else {
			c = s.syncOf(sl)
		}
		switch {
		case c != nil:
			calls = append(calls, c)
		case sl.landed != nil:
			waits = append(waits, sl.landed)
		}
	}
	for id, ss := range s.subs {
		if ss.active == nil && ss.taking == nil && now.Sub(ss.last) > 10*s.o.Active {
			delete(s.subs, id)
		}
	}
	return calls, waits
}

// send runs syncs in one pipeline; those that did not answer are put back.
func (s *Slices) send(ctx context.Context, calls []*syncCall) error {
	if len(calls) == 0 {
		return nil
	}
	sc := make([]scriptCall, len(calls))
	for i, c := range calls {
		sc[i] = c.call
	}
	ok := make([]bool, len(calls))
	err := s.r.evalEach(ctx, s.r.pipe, syncScript, sc, func(i int, val any) {
		ok[i] = true
		s.r.sliceSpent(calls[i].sl, calls[i].cost, val)
	})
	s.mu.Lock()
	for i, c := range calls {
		c.sl.landedSync()
		if !ok[i] {
			s.failed(c)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("sync %d quota slices: %w", len(calls), err)
	}
	return nil
}

// take decides the request in Redis with a new slice, after the sync of
// the slice it replaces (one round trip).
func (s *Slices) take(ctx context.Context, sub Subject, tokens, cost int64, want [4]int64, prev *syncCall) (Decision, *slice, error) {
	r := s.r
	now, nowArg := r.clock()
	sl := &slice{id: "s" + newLease(), sub: sub, active: true, until: s.now().Add(s.o.Active), lastSync: s.now()}
	var left, moLeft time.Duration
	sl.day, left = day(now)
	sl.month, moLeft = month(now)
	if end := s.now().Add(min(left, moLeft)); end.Before(sl.until) {
		sl.until = end
	}
	ls, nl := sub.levels()
	args := []any{nowArg, tokens, left.Seconds(), "0", sl.id, LeaseTTL.Seconds(), cost, moLeft.Seconds(),
		int64(math.Ceil(left.Seconds())) + 3600, int64(math.Ceil(LeaseTTL.Seconds())) + 60}
	for _, l := range ls[:nl] {
		strict := "0"
		if l.lim.StrictBudget {
			strict = "1"
		}
		args = append(args, l.lim.RPM, l.lim.TPM, l.lim.TPD, l.lim.Concurrency, l.lim.Budget, strict)
		sl.limR, sl.limT, sl.limM = sl.limR || l.lim.RPM > 0, sl.limT || l.lim.TPM > 0 || l.lim.TPD > 0, sl.limM || l.lim.Budget > 0
		sl.limC = sl.limC || l.lim.Concurrency > 0
	}
	args = append(args, want[0], want[1], want[2], want[3], s.o.Replicas)
	keys := r.keysOf(sub, sl.day, sl.month, true)
	calls := []scriptCall{{keys: keys, args: args}}
	if prev != nil {
		calls = []scriptCall{prev.call, {keys: keys, args: args}}
	}
	res, err := s.takeOnce(ctx, calls, prev)
	if err == nil && len(res) > 0 && res[0] == int64(-1) {
		if err = r.seed(ctx, sub, r.keys(sub, sl.day, sl.month), sl.day, sl.month, left, moLeft); err == nil {
			res, err = s.takeOnce(ctx, calls[len(calls)-1:], nil)
		}
	}
	if err != nil {
		return Decision{}, nil, fmt.Errorf("admit %s: %w", sub.Key, err)
	}
	if len(res) != 8+9*nl {
		return Decision{}, nil, fmt.Errorf("admit %s: slice script returned %d values", sub.Key, len(res))
	}
	dec := decision(res, nl)
	if !dec.Allowed {
		return dec, nil, nil
	}
	n := func(i int) int64 { v, _ := res[i].(int64); return v }
	sl.reqs, sl.tokens, sl.money = n(4+9*nl), n(5+9*nl), n(6+9*nl)
	sl.heldRedis = sl.money + cost
	if sl.limC {
		sl.slots = 1 + n(7+9*nl)
		sl.slotsRedis = sl.slots
	}
	sl.base = dec
	sl.base.Reservation = nil
	sl.inflight, sl.inflightMoney, sl.used, sl.usedTokens = 1, cost, 1, tokens
	dec.Reservation = &Reservation{Subject: sub, Day: sl.day, Month: sl.month, Tokens: tokens, Cost: cost, slice: sl}
	return dec, sl, nil
}

// takeOnce sends the calls (a sync, then a take) in one pipeline through
// the admissions' batcher and returns the take's answer; the sync, when
// it did not answer, is put back.
func (s *Slices) takeOnce(ctx context.Context, calls []scriptCall, prev *syncCall) ([]any, error) {
	// Once sent, an admission is waited for whatever the caller does: if
	// it took a slice, the slice must be known to be given back.
	ctx, cancel := uncancelled(ctx)
	defer cancel()
	p := s.r.admits
	if p == nil {
		if len(calls) == 1 {
			// A command of its own: traced, a span under its request.
			return sliceScript.Run(ctx, s.r.rdb, calls[0].keys, calls[0].args...).Slice()
		}
		p = s.r.rdb
	}
	var res []any
	var synced bool
	err := s.r.evalEach(ctx, p, sliceScript, calls, func(i int, val any) {
		if i == len(calls)-1 {
			res, _ = val.([]any)
			return
		}
		synced = true
		s.r.sliceSpent(prev.sl, prev.cost, val)
	})
	if prev != nil {
		s.mu.Lock()
		prev.sl.landedSync()
		if !synced {
			s.failed(prev)
		}
		s.mu.Unlock()
	}
	if err == nil && res == nil {
		err = errors.New("slice script: no answer")
	}
	return res, err
}

// syncArgs are a sync's KEYS and ARGV for syncScript.
func (r *Redis) syncArgs(sl *slice, c *syncCall) scriptCall {
	_, nowArg := r.clock()
	args := []any{nowArg, sl.id, c.prevHeld, c.held, c.cost, c.back, c.tokens, flag(c.final),
		LeaseTTL.Seconds(), int64(math.Ceil(LeaseTTL.Seconds())) + 60, c.prevSlots, c.slots, flag(c.renew)}
	ls, n := sl.sub.levels()
	for _, l := range ls[:n] {
		args = append(args, l.lim.RPM, l.lim.TPM, flag(l.lim.Budget > 0), flag(l.lim.Concurrency > 0))
	}
	return scriptCall{r.keysOf(sl.sub, sl.day, sl.month, true), args, syncScript}
}

// flag is a script's boolean argument.
func flag(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// sliceSpent reports the spending a sync moved, from syncScript's answer.
func (r *Redis) sliceSpent(sl *slice, cost int64, val any) {
	before, _ := val.([]any)
	if cost == 0 {
		return
	}
	res := &Reservation{Subject: sl.sub, Day: sl.day, Month: sl.month}
	ls, n := sl.sub.levels()
	for i, l := range ls[:min(n, len(before))] {
		s, _ := before[i].(string)
		b, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		r.money.report(spendOf(l, res, b, b+cost))
	}
}
