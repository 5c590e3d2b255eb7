package models

import (
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// BreakerOptions set every backend's circuit breaker.
type BreakerOptions struct {
	// Failures is how many consecutive failures open the breaker; 0 means 5.
	Failures int
	// Cooldown is how long an open breaker refuses before it lets probes
	// through; it doubles after a failed probe, up to 8×. 0 means 10 s.
	Cooldown time.Duration
	// Probes is how many requests a half-open breaker lets through at
	// once; 0 means 1.
	Probes int
}

func (o BreakerOptions) withDefaults() BreakerOptions {
	if o.Failures <= 0 {
		o.Failures = 5
	}
	if o.Cooldown <= 0 {
		o.Cooldown = 10 * time.Second
	}
	if o.Probes <= 0 {
		o.Probes = 1
	}
	return o
}

// Breaker states.
const (
	StateClosed   = "closed"
	StateOpen     = "open"
	StateHalfOpen = "half_open"
)

// backendState is what the client knows of one backend at run time.
type backendState struct {
	model, name string   // for metrics
	outcomes    sync.Map // outcome → metric.MeasurementOption, built once
	inflight    atomic.Int64
	retryUntil  atomic.Int64 // unix ns: the backend asked us to wait (Retry-After)

	mu       sync.Mutex
	state    string
	fails    int       // consecutive failures
	openedAt time.Time // when it last opened
	cooldown time.Duration
	probes   int // half-open requests in flight
}

// state returns the run-time state of b, a backend of m.
func (c *Client) state(m *Model, b *Backend) *backendState {
	// By name and URL, not by pointer: a reload's new catalog keeps the
	// breakers of the backends it keeps.
	key := m.Name + "\x00" + b.Name + "\x00" + b.URL
	if st, ok := c.states.Load(key); ok {
		return st.(*backendState)
	}
	st, _ := c.states.LoadOrStore(key, &backendState{state: StateClosed, cooldown: c.breaker.Cooldown, model: m.Name, name: b.Name})
	return st.(*backendState)
}

// acquire lets a request through the breaker; an open breaker past its
// cooldown turns half-open and takes it as a probe.
func (c *Client) acquire(st *backendState, now time.Time) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch st.state {
	case StateOpen:
		if now.Before(st.openedAt.Add(st.cooldown)) {
			return false
		}
		st.state, st.probes = StateHalfOpen, 0
		fallthrough
	case StateHalfOpen:
		if st.probes >= c.breaker.Probes {
			return false
		}
		st.probes++
	}
	return true
}

// outcome tells the breaker how a request went before its first byte.
func (c *Client) outcome(st *backendState, failed bool, now time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.state == StateHalfOpen {
		st.probes--
	}
	if !failed {
		st.fails = 0
		if st.state != StateClosed {
			st.state, st.cooldown = StateClosed, c.breaker.Cooldown
		}
		return
	}
	st.fails++
	switch {
	case st.state == StateHalfOpen:
		st.state, st.openedAt = StateOpen, now
		st.cooldown = min(2*st.cooldown, 8*c.breaker.Cooldown)
	case st.state == StateClosed && st.fails >= c.breaker.Failures:
		st.state, st.openedAt = StateOpen, now
	}
}

// outcomeAttrs is the attribute set of an attempt's outcome.
func (st *backendState) outcomeAttrs(outcome string) metric.MeasurementOption {
	if o, ok := st.outcomes.Load(outcome); ok {
		return o.(metric.MeasurementOption)
	}
	kvs := []attribute.KeyValue{attribute.String("gen_ai.request.model", st.model), attribute.String("backend", st.name)}
	if outcome != "" {
		kvs = append(kvs, attribute.String("outcome", outcome))
	}
	o, _ := st.outcomes.LoadOrStore(outcome, metric.WithAttributeSet(attribute.NewSet(kvs...)))
	return o.(metric.MeasurementOption)
}

// attrs is the backend's attribute set (model, backend).
func (st *backendState) attrs() metric.MeasurementOption {
	return st.outcomeAttrs("")
}

// noVerdict ends a request that says nothing of the backend's health.
func (c *Client) noVerdict(st *backendState) {
	st.mu.Lock()
	if st.state == StateHalfOpen && st.probes > 0 {
		st.probes--
	}
	st.mu.Unlock()
}

// BackendStatus is a backend's run-time state, for operators.
type BackendStatus struct {
	Model               string     `json:"model"`
	Name                string     `json:"name"`
	Priority            int        `json:"priority"`
	Weight              int        `json:"weight"`
	State               string     `json:"state"`
	InFlight            int64      `json:"in_flight"`
	MaxConcurrency      int        `json:"max_concurrency"`
	ConsecutiveFailures int        `json:"consecutive_failures"`
	RetryAt             *time.Time `json:"retry_at,omitempty"` // open until, or asked to wait until
}

// Status reports the backends of ms.
func (c *Client) Status(ms []*Model) []BackendStatus {
	now := time.Now()
	var out []BackendStatus
	for _, m := range ms {
		for i := range m.Backends {
			b := &m.Backends[i]
			st := c.state(m, b)
			s := BackendStatus{Model: m.Name, Name: b.Name, Priority: b.Priority, Weight: b.Weight,
				InFlight: st.inflight.Load(), MaxConcurrency: b.MaxConcurrency}
			st.mu.Lock()
			s.State, s.ConsecutiveFailures = st.state, st.fails
			if st.state == StateOpen {
				t := st.openedAt.Add(st.cooldown)
				if t.After(now) {
					s.RetryAt = &t
				}
			}
			st.mu.Unlock()
			if until := st.retryUntil.Load(); until > now.UnixNano() {
				t := time.Unix(0, until)
				s.RetryAt = &t
			}
			out = append(out, s)
		}
	}
	return out
}

// Reset closes the breakers of the backends named name among ms (and
// forgets any Retry-After); it reports how many it found.
func (c *Client) Reset(ms []*Model, name string) int {
	n := 0
	for _, m := range ms {
		for i := range m.Backends {
			b := &m.Backends[i]
			if b.Name != name && m.Name+"/"+b.Name != name {
				continue
			}
			st := c.state(m, b)
			st.mu.Lock()
			st.state, st.fails, st.probes, st.cooldown = StateClosed, 0, 0, c.breaker.Cooldown
			st.mu.Unlock()
			st.retryUntil.Store(0)
			n++
		}
	}
	return n
}
