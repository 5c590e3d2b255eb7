package models

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// Upstream failures, told apart so that the gateway can answer each with
// its own status.
var (
	// ErrFirstTokenTimeout: the backend sent no first byte in time.
	ErrFirstTokenTimeout = errors.New("no first token from the backend in time")
	// ErrIdleTimeout: a stream stalled longer than the model's idle timeout.
	ErrIdleTimeout = errors.New("backend stream stalled")
	// ErrTotalTimeout: the call outlasted the model's total timeout.
	ErrTotalTimeout = errors.New("backend call took too long")
)

// UpstreamError is a backend's non-200 answer.
type UpstreamError struct {
	Backend    string
	Status     int
	Message    string        // the backend's error message, if it sent one
	RetryAfter time.Duration // from the backend's Retry-After, if any
}

func (e *UpstreamError) Error() string {
	return fmt.Sprintf("backend %s answered %d: %s", e.Backend, e.Status, e.Message)
}

// ConnectError is a failure to reach a backend at all.
type ConnectError struct {
	Backend string
	Err     error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("backend %s: %v", e.Backend, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// Client calls backends over pooled keep-alive connections, choosing
// among a model's backends and failing over between them.
type Client struct {
	hc      *http.Client
	h2c     *http.Client // for backends that speak HTTP/2 without TLS
	breaker BreakerOptions
	states  sync.Map // model, backend name and URL → *backendState

	attempts, failovers metric.Int64Counter
	firstToken          metric.Float64Histogram
}

// NewClient returns a client whose transport keeps enough idle connections
// per backend for a busy gateway.
func NewClient(o BreakerOptions) *Client {
	dialer := &net.Dialer{KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		// The per-model connect timeout is applied through the context.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if d, ok := ctx.Value(connectTimeoutKey{}).(time.Duration); ok && d > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			return dialer.DialContext(ctx, network, addr)
		},
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// Streams must reach the client as they arrive; a compressed
		// upstream body would be buffered by the decompressor.
		DisableCompression: true,
		// A connection keeps its write buffer while it lives, and a
		// stream holds its connection: 1 KiB, not 4, for a request's
		// headers (a larger body is written past the buffer).
		WriteBufferSize: 1 << 10,
	}
	// Backends that speak h2c: streams multiplexed on a few connections,
	// no connection (and its reading and writing goroutines) per stream.
	h2 := t.Clone()
	h2.Protocols = new(http.Protocols)
	h2.Protocols.SetUnencryptedHTTP2(true)
	c := &Client{hc: &http.Client{Transport: t}, h2c: &http.Client{Transport: h2}, breaker: o.withDefaults()}
	c.instrument(otel.Meter("github.com/obol/obol/models"))
	return c
}

// client is the HTTP client for b: h2c or not.
func (c *Client) client(b *Backend) *http.Client {
	if b.H2C {
		return c.h2c
	}
	return c.hc
}

// instrument creates the client's metrics in m.
func (c *Client) instrument(m metric.Meter) {
	c.attempts, _ = m.Int64Counter("obol.backend.attempts", metric.WithUnit("{attempt}"),
		metric.WithDescription("Backend calls, by model, backend and outcome (ok, failed, refused, cancelled)"))
	c.firstToken, _ = m.Float64Histogram("obol.backend.first_token.duration", metric.WithUnit("s"),
		metric.WithDescription("Time from a backend call to its first token (streams) or whole answer, by model and backend"),
		metric.WithExplicitBucketBoundaries(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
	c.failovers, _ = m.Int64Counter("obol.backend.failovers", metric.WithUnit("{attempt}"),
		metric.WithDescription("Requests sent on to another backend after this one (the label) failed before its first token"))
	state := map[string]int64{StateClosed: 0, StateHalfOpen: 1, StateOpen: 2}
	m.Int64ObservableGauge("obol.backend.breaker.state",
		metric.WithDescription("Circuit breaker per backend: 0 closed, 1 half-open, 2 open"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			c.states.Range(func(_, v any) bool {
				st := v.(*backendState)
				st.mu.Lock()
				s := st.state
				st.mu.Unlock()
				o.Observe(state[s], metric.WithAttributes(attribute.String("gen_ai.request.model", st.model), attribute.String("backend", st.name)))
				return true
			})
			return nil
		}))
	m.Int64ObservableGauge("obol.backend.in_flight", metric.WithUnit("{request}"),
		metric.WithDescription("Requests in flight per backend"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			c.states.Range(func(_, v any) bool {
				st := v.(*backendState)
				o.Observe(st.inflight.Load(), metric.WithAttributes(attribute.String("gen_ai.request.model", st.model), attribute.String("backend", st.name)))
				return true
			})
			return nil
		}))
}

// counted records an attempt's outcome.
func (c *Client) counted(ctx context.Context, st *backendState, err error) {
	outcome := "ok"
	switch {
	case err == nil:
	case ctx.Err() != nil:
		outcome = "cancelled"
	case breakerFailure(err) || failover(err):
		outcome = "failed"
	default:
		outcome = "refused"
	}
	c.attempts.Add(context.WithoutCancel(ctx), 1, st.outcomeAttrs(outcome))
}

type connectTimeoutKey struct{}

// Response is a backend's 200 answer: a non-streaming answer read whole
// (Body), or a stream from its first token on (Events), whose reads
// enforce the model's idle and total timeouts. Close must be called.
type Response struct {
	Backend *Backend
	Header  http.Header
	Body    io.Reader // non-streaming answers
	Events  *Events   // streams
	closer  *closer
}

// Close releases the call.
func (r *Response) Close() error { return r.closer.Close() }

// Body is a call's request in each dialect, made when a backend of that
// dialect is first tried, without its "model" member: each backend gets
// its own model name, so the public name never reaches a backend that
// would not know it. A nil maker, or one that fails, passes that
// dialect's backends over; its error is the answer if no backend could
// take the request.
type Body struct {
	OpenAI, Anthropic func() ([]byte, error)
	// Beta is the client's anthropic-beta, sent on to Anthropic backends.
	Beta string
}

// Bytes is a body only OpenAI backends take.
func Bytes(b []byte) Body {
	return Body{OpenAI: func() ([]byte, error) { return b, nil }}
}

// errNoDialect is a request none of a model's backends can take.
var errNoDialect = errors.New("no backend of the model takes this request")

// bodies makes each dialect's body once.
type bodies struct {
	Body
	made map[Dialect][]byte
	errs map[Dialect]error
}

func (bs *bodies) get(d Dialect) ([]byte, error) {
	if b, ok := bs.made[d]; ok {
		return b, bs.errs[d]
	}
	mk := bs.OpenAI
	if d == Anthropic {
		mk = bs.Anthropic
	}
	var b []byte
	err := errNoDialect
	if mk != nil {
		b, err = mk()
	}
	bs.made[d], bs.errs[d] = b, err
	return b, err
}

// Send posts a request to one of the model's backends, in its dialect,
// and to another when that one fails before its first byte, within the
// model's attempts and its total timeout.
//
// A streaming answer is returned once its first event has arrived; a
// non-streaming one once it has arrived whole. Either way nothing of a
// failed attempt has reached the caller, so trying another is invisible.
func (c *Client) Send(ctx context.Context, m *Model, api API, body Body, stream bool) (*Response, error) {
	ctx, cancel := context.WithCancelCause(context.WithValue(ctx, connectTimeoutKey{}, m.Timeouts.Connect))
	total := time.AfterFunc(m.Timeouts.Total, func() { cancel(ErrTotalTimeout) })
	release := func() {
		total.Stop()
		cancel(context.Canceled)
	}
	bs := &bodies{Body: body, made: map[Dialect][]byte{}, errs: map[Dialect]error{}}
	var tried []*Backend
	var prev *Backend // the last backend attempted
	var last, unfit error
	// A backend whose dialect the request cannot be written in is not an
	// attempt: pick passes it over.
	fits := func(b *Backend) bool {
		_, err := bs.get(b.dialect())
		if err != nil {
			unfit = err
		}
		return err == nil
	}
	wait := time.Duration(0)
	for n := 0; n < m.attempts(); n++ {
		b, st, w := c.pick(m, tried, fits)
		if b == nil {
			wait = w
			break
		}
		raw, _ := bs.get(b.dialect())
		if prev != nil {
			c.failovers.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(
				attribute.String("gen_ai.request.model", m.Name), attribute.String("backend", prev.Name)))
		}
		tried, prev = append(tried, b), b
		resp, err := c.attempt(ctx, m, b, st, api, &sendBody{raw: raw, beta: body.Beta}, stream)
		if err == nil {
			prev := resp.closer.close
			resp.closer.close = func() error { err := prev(); release(); return err }
			return resp, nil
		}
		last = err
		if ctx.Err() != nil || !failover(err) {
			break
		}
	}
	release()
	switch {
	case last != nil:
		return nil, last
	case unfit != nil && wait == 0:
		return nil, unfit
	}
	return nil, &UnavailableError{Model: m.Name, RetryAfter: max(wait, time.Second)}
}

// sendBody is what one attempt sends.
type sendBody struct {
	raw  []byte
	beta string
}

// tracerName names the backend attempt spans' tracer, taken from the
// global provider at each traced call (so a provider set later is used).
const tracerName = "github.com/obol/obol/models"

func hostOf(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Host
	}
	return ""
}

// maxAnswer bounds a non-streaming answer held in memory.
const maxAnswer = 64 << 20

// withModel returns body, a JSON object, with "model" set first.
func withModel(body []byte, model string) []byte {
	q, _ := json.Marshal(model)
	out := make([]byte, 0, len(body)+len(q)+12)
	out = append(out, `{"model":`...)
	out = append(out, q...)
	rest := bytes.TrimSpace(body)
	rest = bytes.TrimPrefix(rest, []byte("{"))
	if r := bytes.TrimSpace(rest); len(r) > 0 && r[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

// withContinuousUsage adds vLLM's continuous_usage_stats to the body's
// stream_options; a body it cannot read goes as it is.
func withContinuousUsage(body []byte) []byte {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return body
	}
	so := map[string]json.RawMessage{}
	if raw, ok := fields["stream_options"]; ok && json.Unmarshal(raw, &so) != nil {
		return body
	}
	so["include_usage"] = json.RawMessage("true")
	so["continuous_usage_stats"] = json.RawMessage("true")
	fields["stream_options"], _ = json.Marshal(so)
	out, err := json.Marshal(fields)
	if err != nil {
		return body
	}
	return out
}

func upstreamError(backend string, resp *http.Response) *UpstreamError {
	e := &UpstreamError{Backend: backend, Status: resp.StatusCode}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if secs, err := strconv.Atoi(s); err == nil {
			e.RetryAfter = time.Duration(secs) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			e.RetryAfter = time.Until(t)
		}
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body struct {
		Error json.RawMessage `json:"error"`
		// Some servers (Ollama, older vLLM) answer {"message": ...} or {"detail": ...}.
		Message string `json:"message"`
		Detail  any    `json:"detail"`
	}
	if json.Unmarshal(raw, &body) == nil {
		var inner struct {
			Message string `json:"message"`
		}
		var s string
		switch {
		case json.Unmarshal(body.Error, &inner) == nil && inner.Message != "":
			e.Message = inner.Message
		case json.Unmarshal(body.Error, &s) == nil:
			e.Message = s
		case body.Message != "":
			e.Message = body.Message
		case body.Detail != nil:
			e.Message = fmt.Sprint(body.Detail)
		}
	}
	return e
}

// Probe reports whether at least one backend of m answers HTTP at its
// models endpoint; any answer below 500 counts (a 401 still shows the
// server is up).
func (c *Client) Probe(ctx context.Context, m *Model) error {
	var errs []error
	for i := range m.Backends {
		b := &m.Backends[i]
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(b.URL, "/")+"/models", nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		switch {
		case b.dialect() == Anthropic:
			req.Header.Set("anthropic-version", AnthropicVersion)
			if b.APIKey != "" {
				req.Header.Set("x-api-key", b.APIKey)
			}
		case b.APIKey != "":
			req.Header.Set("Authorization", "Bearer "+b.APIKey)
		}
		resp, err := c.client(b).Do(req)
		if err != nil {
			errs = append(errs, fmt.Errorf("backend %s: %w", b.Name, err))
			continue
		}
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode < 500 {
			return nil
		}
		errs = append(errs, fmt.Errorf("backend %s: status %d", b.Name, resp.StatusCode))
	}
	return fmt.Errorf("probe %s: %w", m.Name, errors.Join(errs...))
}
