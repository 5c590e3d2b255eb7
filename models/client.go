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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

// Client calls backends over pooled keep-alive connections.
type Client struct {
	hc *http.Client
}

// NewClient returns a client whose transport keeps enough idle connections
// per backend for a busy gateway.
func NewClient() *Client {
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
	}
	return &Client{hc: &http.Client{Transport: t}}
}

type connectTimeoutKey struct{}

// Response is a backend's 200 answer. Its body enforces the model's
// first-token, idle and total timeouts; Close must be called.
type Response struct {
	Backend *Backend
	Header  http.Header
	Body    io.ReadCloser
}

// Close releases the call.
func (r *Response) Close() error { return r.Body.Close() }

// Send posts a chat completion request to the model's backend. body is the
// request without its "model" field: Send adds the backend's own model name,
// so the public name never reaches a backend that would not know it.
func (c *Client) Send(ctx context.Context, m *Model, body []byte, stream bool) (*Response, error) {
	b := &m.Backends[0]
	t := m.Timeouts
	ctx, cancel := context.WithCancelCause(context.WithValue(ctx, connectTimeoutKey{}, t.Connect))
	tb := &timedBody{ctx: ctx, cancel: cancel, idle: t.Idle}
	tb.total = time.AfterFunc(t.Total, func() { cancel(ErrTotalTimeout) })
	// A non-streaming answer arrives whole, so only the total bounds it.
	if stream {
		tb.timer = time.AfterFunc(t.FirstToken, tb.fire)
	}

	if stream && b.ContinuousUsage {
		body = withContinuousUsage(body)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(b.URL, "/")+"/chat/completions", bytes.NewReader(withModel(body, b.Model)))
	if err != nil {
		tb.release()
		return nil, fmt.Errorf("backend %s: %w", b.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "obol")
	if b.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+b.APIKey)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		defer tb.release()
		if ctx.Err() != nil {
			// A timeout of ours, or the caller gone.
			return nil, fmt.Errorf("backend %s: %w", b.Name, context.Cause(ctx))
		}
		return nil, &ConnectError{Backend: b.Name, Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer tb.release()
		defer resp.Body.Close()
		e := upstreamError(b.Name, resp)
		// A backend's message may name its own model; clients see only ours.
		if b.Model != "" {
			e.Message = strings.ReplaceAll(e.Message, b.Model, m.Name)
		}
		return nil, e
	}
	tb.rc = resp.Body
	return &Response{Backend: b, Header: resp.Header, Body: tb}, nil
}

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

// timedBody enforces the first-token and idle timeouts on reads, and turns
// a read cut short by a timeout into that timeout's error.
type timedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   time.Duration
	total  *time.Timer
	// timer is the first-token timer until the first byte, then the idle
	// timer; nil for a non-streaming call.
	timer   *time.Timer
	started atomic.Bool
	once    sync.Once
}

func (b *timedBody) fire() {
	if b.started.Load() {
		b.cancel(ErrIdleTimeout)
	} else {
		b.cancel(ErrFirstTokenTimeout)
	}
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 && b.timer != nil {
		b.started.Store(true)
		b.timer.Reset(b.idle)
	}
	if err != nil && err != io.EOF && b.ctx.Err() != nil {
		return n, context.Cause(b.ctx)
	}
	return n, err
}

// release stops the timers and cancels the call's context.
func (b *timedBody) release() {
	b.total.Stop()
	if b.timer != nil {
		b.timer.Stop()
	}
	b.cancel(context.Canceled)
}

func (b *timedBody) Close() error {
	var err error
	b.once.Do(func() {
		err = b.rc.Close()
		b.release()
	})
	return err
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
		if b.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+b.APIKey)
		}
		resp, err := c.hc.Do(req)
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
