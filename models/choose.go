package models

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// available reports whether st could take a request now, and if not, how
// long until it might.
func (c *Client) available(st *backendState, b *Backend, now time.Time) (bool, time.Duration) {
	if until := st.retryUntil.Load(); until > now.UnixNano() {
		return false, time.Duration(until - now.UnixNano())
	}
	if b.MaxConcurrency > 0 && st.inflight.Load() >= int64(b.MaxConcurrency) {
		return false, time.Second
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	switch st.state {
	case StateOpen:
		if wait := st.openedAt.Add(st.cooldown).Sub(now); wait > 0 {
			return false, wait
		}
		return true, 0
	case StateHalfOpen:
		return st.probes < c.breaker.Probes, c.breaker.Cooldown
	}
	return true, 0
}

// pick chooses the backend for the next attempt among those not tried:
// the best priority (0 first) that has one available, then by weight and
// load: two weighted-random draws, and the one with fewer requests in
// flight per unit of weight. With none available it returns how long
// until one might be. A backend the request cannot be written for (fits
// false) is passed over before its breaker is consulted, so it never takes
// a half-open probe it would not use.
func (c *Client) pick(m *Model, tried []*Backend, fits func(*Backend) bool) (*Backend, *backendState, time.Duration) {
	now := time.Now()
	for {
		best, soonest := -1, time.Duration(-1)
		var cands []int
		for i := range m.Backends {
			b := &m.Backends[i]
			if containsBackend(tried, b) || !fits(b) {
				continue
			}
			ok, wait := c.available(c.state(m, b), b, now)
			if !ok {
				if soonest < 0 || wait < soonest {
					soonest = wait
				}
				continue
			}
			if best < 0 || b.Priority < best {
				best, cands = b.Priority, cands[:0]
			}
			if b.Priority == best {
				cands = append(cands, i)
			}
		}
		if len(cands) == 0 {
			return nil, nil, max(soonest, 0)
		}
		i := cands[0]
		if len(cands) > 1 {
			i = c.choose(m, cands)
		}
		b := &m.Backends[i]
		st := c.state(m, b)
		if c.acquire(st, now) {
			return b, st, 0
		}
		// Another request took the last half-open probe: try again
		// without it.
		tried = append(tried[:len(tried):len(tried)], b)
	}
}

// choose draws two candidates by weight and keeps the less loaded.
func (c *Client) choose(m *Model, cands []int) int {
	total := 0
	for _, i := range cands {
		total += m.Backends[i].Weight
	}
	draw := func() int {
		n := rand.IntN(total)
		for _, i := range cands {
			if n < m.Backends[i].Weight {
				return i
			}
			n -= m.Backends[i].Weight
		}
		return cands[len(cands)-1]
	}
	a, b := draw(), draw()
	if a == b {
		return a
	}
	la := float64(c.state(m, &m.Backends[a]).inflight.Load()) / float64(m.Backends[a].Weight)
	lb := float64(c.state(m, &m.Backends[b]).inflight.Load()) / float64(m.Backends[b].Weight)
	if lb < la {
		return b
	}
	return a
}

func containsBackend(list []*Backend, b *Backend) bool {
	for _, x := range list {
		if x == b {
			return true
		}
	}
	return false
}

// UnavailableError is a model none of whose backends could take the
// request: every one open, saturated, or asking to wait.
type UnavailableError struct {
	Model      string
	RetryAfter time.Duration
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("every backend of %s is open-circuited or saturated; retry in %s", e.Model, e.RetryAfter)
}
