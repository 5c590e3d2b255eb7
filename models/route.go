package models

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/obol/obol/internal/chunk"
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
	if st, ok := c.states.Load(b); ok {
		return st.(*backendState)
	}
	st, _ := c.states.LoadOrStore(b, &backendState{state: StateClosed, cooldown: c.breaker.Cooldown, model: m.Name, name: b.Name})
	return st.(*backendState)
}

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

// pick chooses the backend for the next attempt among those not tried:
// the best priority (0 first) that has one available, then by weight and
// load: two weighted-random draws, and the one with fewer requests in
// flight per unit of weight. With none available it returns how long
// until one might be.
func (c *Client) pick(m *Model, tried []*Backend) (*Backend, *backendState, time.Duration) {
	now := time.Now()
	for {
		best, soonest := -1, time.Duration(-1)
		var cands []int
		for i := range m.Backends {
			b := &m.Backends[i]
			if containsBackend(tried, b) {
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

// failover reports whether a failed attempt may go to another backend:
// the backend failed before its first byte (cannot connect, 5xx, 429, no
// first token in time, an error in place of the first event). A refusal
// of the request itself (another 4xx), the caller gone and the total
// timeout are final.
func failover(err error) bool {
	var ue *UpstreamError
	var ce *ConnectError
	switch {
	case errors.As(err, &ce), errors.Is(err, ErrFirstTokenTimeout), errors.Is(err, ErrBadFirstEvent), errors.Is(err, ErrAnswerCut):
		return true
	case errors.As(err, &ue):
		return ue.Status == http.StatusTooManyRequests || ue.Status >= 500
	}
	return false
}

// breakerFailure reports whether a failed attempt counts against the
// backend's health: a 429 is the backend's way to pace us, not a fault,
// and a request it refused says nothing about it.
func breakerFailure(err error) bool {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue.Status >= 500
	}
	return failover(err)
}

var (
	// ErrBadFirstEvent is a stream whose first event is an error.
	ErrBadFirstEvent = errors.New("the backend's stream began with an error")
	// ErrAnswerCut is an answer that ended before its first event, or a
	// non-streaming one cut short.
	ErrAnswerCut = errors.New("the backend's answer was cut short")
)

// peekFirstEvent reads a stream up to the end of its first event with
// substance (content, a tool call, a finish reason, usage), past any
// role-only chunk, so that a backend that fails before it can still be
// failed over: nothing read so far has reached the client. It returns
// what it read and the reader for the rest.
func peekFirstEvent(r io.Reader) ([]byte, *bufio.Reader, error) {
	br := bufio.NewReaderSize(r, 4<<10) // the relay reads through a buffer of its own
	var buf []byte
	var data []byte // the current event's data
	for {
		line, err := br.ReadSlice('\n')
		buf = append(buf, line...)
		if err == bufio.ErrBufferFull {
			if len(buf) > maxPeek {
				return nil, nil, fmt.Errorf("%w: no event in the first %d bytes", ErrAnswerCut, maxPeek)
			}
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = ErrAnswerCut
			}
			return nil, nil, err
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0 && data != nil:
			done, err := substantive(data)
			if err != nil {
				return nil, nil, err
			}
			if done {
				return buf, br, nil
			}
			data = nil
		case bytes.HasPrefix(trimmed, []byte("data:")):
			data = append(data, bytes.TrimSpace(trimmed[5:])...)
		}
		if len(buf) > maxPeek {
			return nil, nil, fmt.Errorf("%w: no token in the first %d bytes", ErrAnswerCut, maxPeek)
		}
	}
}

// maxPeek bounds what is held back before the first token.
const maxPeek = 1 << 20

// substantive reports whether an event's data ends the peek: anything but
// a chunk whose choices carry only a role or empty content. An error
// event is a failure of the backend.
func substantive(data []byte) (bool, error) {
	if string(data) == "[DONE]" {
		return true, nil
	}
	var ev chunk.Chunk
	if chunk.Parse(data, &ev) != nil {
		return true, nil // not ours to judge: the relay will
	}
	if ev.Error != nil {
		return false, fmt.Errorf("%w: %.300s", ErrBadFirstEvent, data)
	}
	if ev.Usage != nil && ev.NChoices == 0 {
		return true, nil
	}
	return ev.Substantive, nil
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

// body is a Response's body: what was peeked, then the rest; closing it
// ends the attempt and the call.
type body struct {
	io.Reader
	close func() error
	once  sync.Once
	err   error
}

func (b *body) Close() error {
	b.once.Do(func() { b.err = b.close() })
	return b.err
}
