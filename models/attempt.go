package models

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/sse"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// attempt is one backend's try: the request, and the answer read up to
// its first token (a stream) or whole, so that a failure before then can
// still fail over.
func (c *Client) attempt(ctx context.Context, m *Model, b *Backend, st *backendState, api API, body *sendBody, stream bool) (resp *Response, err error) {
	began := time.Now()
	ctx, span := startAttemptSpan(ctx, m, b)
	// The span lasts until the answer's body is closed; the first token
	// is an event on it.
	defer func() {
		if err == nil {
			c.firstToken.Record(context.WithoutCancel(ctx), time.Since(began).Seconds(), st.attrs())
		}
		endAttemptSpan(span, err)
	}()
	st.inflight.Add(1)
	actx, cancel := context.WithCancelCause(ctx)
	tb := &timedBody{ctx: actx, cancel: cancel, idle: m.Timeouts.Idle}
	if stream {
		tb.timer = time.AfterFunc(m.Timeouts.FirstToken, tb.fire)
	}
	defer func() {
		c.counted(ctx, st, err)
		if err != nil {
			tb.release()
			st.inflight.Add(-1)
			if ctx.Err() == nil {
				c.outcome(st, breakerFailure(err), time.Now())
			} else {
				c.noVerdict(st) // the caller left, or the total ran out: nothing learnt of the backend
			}
			return
		}
		c.outcome(st, false, time.Now())
	}()

	hresp, err := c.post(actx, m, b, st, api, body, stream)
	if err != nil {
		return nil, err
	}
	tb.rc = hresp.Body
	done := func() error {
		err := tb.Close()
		st.inflight.Add(-1)
		if span.IsRecording() {
			span.End()
		}
		return err
	}
	resp = &Response{Backend: b, Header: hresp.Header, closer: &closer{close: done}}
	if stream {
		resp.Events, err = peekFirstEvent(tb, b.dialect())
	} else {
		resp.Body, err = readWhole(tb)
	}
	if err != nil {
		cause := actx.Err()
		tb.Close()
		if cause != nil {
			return nil, fmt.Errorf("backend %s: %w", b.Name, context.Cause(actx))
		}
		return nil, fmt.Errorf("backend %s: %w", b.Name, err)
	}
	return resp, nil
}

// startAttemptSpan starts the attempt's span, under a recorded request
// span only: a request not traced makes no span of its own.
func startAttemptSpan(ctx context.Context, m *Model, b *Backend) (context.Context, trace.Span) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return ctx, span
	}
	return otel.Tracer(tracerName).Start(ctx, "chat "+m.Name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("gen_ai.operation.name", "chat"), attribute.String("gen_ai.request.model", m.Name),
		attribute.String("obol.backend", b.Name), attribute.String("server.address", hostOf(b.URL))))
}

// endAttemptSpan ends a failed attempt's span, or marks the first token
// on a successful one (which ends when its body is closed).
func endAttemptSpan(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, "backend failed")
		span.End()
		return
	}
	span.AddEvent("first_token")
}

// post sends the request to b and returns its 200 answer; any other
// status is an *UpstreamError, whose Retry-After keeps requests off b.
func (c *Client) post(ctx context.Context, m *Model, b *Backend, st *backendState, api API, body *sendBody, stream bool) (*http.Response, error) {
	reqBody, path := body.raw, string(api)
	if b.dialect() == Anthropic {
		path = "messages" // Anthropic backends serve chat alone (config checks it)
	} else if stream && b.ContinuousUsage {
		reqBody = withContinuousUsage(reqBody)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(b.URL, "/")+"/"+path, bytes.NewReader(withModel(reqBody, b.Model)))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", b.Name, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	} else {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("User-Agent", "obol")
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	switch {
	case b.dialect() == Anthropic:
		req.Header.Set("anthropic-version", AnthropicVersion)
		if body.beta != "" {
			req.Header.Set("anthropic-beta", body.beta)
		}
		if b.APIKey != "" {
			req.Header.Set("x-api-key", b.APIKey)
		}
	case b.APIKey != "":
		req.Header.Set("Authorization", "Bearer "+b.APIKey)
	}
	hresp, err := c.client(b).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			// A timeout of ours, or the caller gone.
			return nil, fmt.Errorf("backend %s: %w", b.Name, context.Cause(ctx))
		}
		return nil, &ConnectError{Backend: b.Name, Err: err}
	}
	if hresp.StatusCode == http.StatusOK {
		return hresp, nil
	}
	defer hresp.Body.Close()
	e := upstreamError(b.Name, hresp)
	// A backend's message may name its own model; clients see only ours.
	if b.Model != "" {
		e.Message = strings.ReplaceAll(e.Message, b.Model, m.Name)
	}
	if e.RetryAfter > 0 && (e.Status == http.StatusTooManyRequests || e.Status == http.StatusServiceUnavailable || e.Status == StatusOverloaded) {
		st.retryUntil.Store(time.Now().Add(e.RetryAfter).UnixNano())
	}
	return nil, e
}

// readWhole reads a non-streaming answer whole, so that its failures
// still fail over.
func readWhole(r io.Reader) (io.Reader, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrAnswerCut, err)
	}
	return bytes.NewReader(raw), nil
}

// timedBody enforces the first-token and idle timeouts on reads, and turns
// a read cut short by a timeout into that timeout's error.
type timedBody struct {
	rc     io.ReadCloser
	ctx    context.Context
	cancel context.CancelCauseFunc
	idle   time.Duration
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

// release stops the timer and cancels the attempt's context.
func (b *timedBody) release() {
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

// eventBuffer is the size of a stream's event reader: a few events of
// tokens (a longer line is joined whole).
const eventBuffer = 1 << 10

// peekFirstEvent reads a stream up to the end of its first event with
// substance (content, a tool call, a finish reason, usage), past any
// role-only chunk, so that a backend that fails before it can still be
// failed over: nothing read so far has reached the client. The events it
// read are held, to be read again first.
func peekFirstEvent(r io.Reader, d Dialect) (*Events, error) {
	substantive := substantiveChunk
	if d == Anthropic {
		substantive = substantiveEvent
	}
	// The relay reads on through the same reader: one buffer per stream,
	// held while the stream lasts. It reads from the connection's own
	// buffer, not the socket, so a small one costs copies, not syscalls.
	lr := &limited{r: r, n: maxPeek}
	ev := &Events{r: sse.NewReader(lr, eventBuffer)}
	for {
		data, err := ev.r.Next()
		if err != nil {
			switch {
			case errors.Is(err, errPeekTooLong):
				return nil, fmt.Errorf("%w: no token in the first %d bytes", ErrAnswerCut, maxPeek)
			case err == io.EOF:
				return nil, ErrAnswerCut
			}
			// A connection broken off (a body cut mid-chunk, a reset), as
			// readWhole says of an answer not streamed; a timeout is told
			// by the attempt's context.
			return nil, fmt.Errorf("%w: %v", ErrAnswerCut, err)
		}
		if ev.r.EOF() {
			return nil, ErrAnswerCut // the event was cut by the end of the answer
		}
		done, err := substantive(data)
		if err != nil {
			return nil, err
		}
		ev.held = append(ev.held, bytes.Clone(data))
		if done {
			lr.off = true
			return ev, nil
		}
	}
}

// Events reads a stream's events: first those the peek held back, then
// the rest. The data of an event is valid until the next call.
type Events struct {
	held [][]byte
	r    *sse.Reader
}

// Next returns the data of the next event; io.EOF at the end.
func (e *Events) Next() ([]byte, error) {
	if len(e.held) > 0 {
		d := e.held[0]
		e.held = e.held[1:]
		return d, nil
	}
	return e.r.Next()
}

// Complete reports whether a whole event is ready, so that reading it
// will not wait on the backend.
func (e *Events) Complete() bool { return len(e.held) > 0 || e.r.Complete() }

// limited reads at most n bytes of r before the peek ends, then lifts
// its bound: a backend cannot make the gateway hold back more than n
// bytes in search of a first token.
type limited struct {
	r   io.Reader
	n   int
	off bool // the peek is over
}

var errPeekTooLong = errors.New("peek too long")

func (l *limited) Read(p []byte) (int, error) {
	if l.off {
		return l.r.Read(p)
	}
	if l.n < 0 {
		return 0, errPeekTooLong
	}
	n, err := l.r.Read(p)
	l.n -= n
	return n, err
}

// maxPeek bounds what is held back before the first token.
const maxPeek = 1 << 20

// substantiveChunk reports whether a chat chunk ends the peek: anything
// but a chunk whose choices carry only a role or empty content. An error
// event is a failure of the backend.
func substantiveChunk(data []byte) (bool, error) {
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

// StatusOverloaded is Anthropic's 529: overloaded, try again or elsewhere.
const StatusOverloaded = 529

// substantiveEvent reports whether a Messages event ends the peek: a
// block's text or tool call, a message_delta or the end. message_start,
// ping and an empty text block's start do not; an error event is a
// failure of the backend.
func substantiveEvent(data []byte) (bool, error) {
	var ev struct {
		Type         string `json:"type"`
		ContentBlock struct {
			Type string `json:"type"`
		} `json:"content_block"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return true, nil // not ours to judge: the relay will
	}
	switch ev.Type {
	case "error":
		return false, fmt.Errorf("%w: %.300s", ErrBadFirstEvent, data)
	case "message_start", "ping":
		return false, nil
	case "content_block_start":
		return ev.ContentBlock.Type != "text" && ev.ContentBlock.Type != "thinking", nil
	}
	return true, nil
}

// closer ends a call once, however often it is closed.
type closer struct {
	close func() error
	once  sync.Once
	err   error
}

func (c *closer) Close() error {
	c.once.Do(func() { c.err = c.close() })
	return c.err
}
