package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
)

// Stream outcomes, as the access log reports them.
const (
	outcomeCompleted     = "completed"
	outcomeClientGone    = "client_gone"
	outcomeUpstreamError = "upstream_error"
	outcomeShutdown      = "shutdown" // cut by the end of the shutdown grace
)

// compatChunk is an OpenAI chat.completion.chunk as clients of
// /v1/chat/completions get it: the backend's, with the gateway's id and
// the public model name, and usage only if the client asked for it.
type compatChunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint json.RawMessage `json:"system_fingerprint,omitempty"`
	ServiceTier       json.RawMessage `json:"service_tier,omitempty"`
	Choices           json.RawMessage `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

// nativeChunk is DESIGN.md's native stream event: an OpenAI chunk plus
// choice 0's text increment as a top-level string (other choices and tool
// calls are read from choices, as OpenAI's clients read them).
type nativeChunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint json.RawMessage `json:"system_fingerprint,omitempty"`
	ServiceTier       json.RawMessage `json:"service_tier,omitempty"`
	Choices           json.RawMessage `json:"choices"`
	Delta             string          `json:"delta"`
	Usage             *Usage          `json:"usage,omitempty"`
}

var (
	errStreamCut = errors.New("the backend's stream ended before [DONE]")
	// errBrokenStream is a backend stream that failed after it began: an
	// error event, an unreadable event, a read that failed.
	errBrokenStream = errors.New("backend stream broken")
)

// streamer turns a backend's events into a client's stream: the chat
// relay (native or OpenAI's chunks) or the Responses events.
type streamer interface {
	// run relays events until the backend's stream ends.
	run(events *models.Events) error
	// relayed is what the stream carried: the backend's usage (nil if it
	// sent none) and the gateway's own count of completion tokens.
	relayed() (*Usage, int)
	// fail ends a started stream with e.
	fail(e *apierr.Error)
}

// stream relays a backend's SSE stream to the client, event by event, in
// the shape newStreamer makes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *call, req *chatRequest, m *models.Model, newStreamer func(*sseWriter) streamer) error {
	c.stream = true
	s.metrics.streams.Add(r.Context(), 1)
	defer s.metrics.streams.Add(r.Context(), -1)
	out := newSSE(w, s.keepAlive)
	defer out.stop()
	st := newStreamer(out)
	resp, err := s.callBackend(r.Context(), c, m, req, true)
	if err != nil {
		if !out.stop() {
			return err // nothing sent yet: a proper status and JSON error
		}
		c.started = true
		c.outcome = outcomeUpstreamError
		st.fail(asError(err, m.Name))
		return err
	}
	defer resp.Close()
	err = st.run(resp.Events)
	if err != nil && r.Context().Err() == nil && !errors.Is(err, errClientGone) && !out.stop() {
		return err // failed before the first byte: still a proper status
	}
	c.started = true
	u, counted := st.relayed()
	c.usage = u
	if c.usage == nil {
		c.usage, c.counted = &Usage{PromptTokens: req.PromptTokens, CompletionTokens: counted}, true
		c.usage.TotalTokens = c.usage.PromptTokens + c.usage.CompletionTokens
	}
	switch {
	case err == nil:
		c.outcome = outcomeCompleted
		return nil
	case s.abort.Err() != nil:
		c.outcome = outcomeShutdown
		st.fail(errShuttingDown)
		return errShuttingDown
	case r.Context().Err() != nil || errors.Is(err, errClientGone):
		c.outcome = outcomeClientGone
		return nil
	}
	c.outcome = outcomeUpstreamError
	e := asError(err, m.Name)
	st.fail(e)
	return e
}

// chatStreamer is the chat relay, native or OpenAI-shaped.
func (s *Server) chatStreamer(c *call, req *chatRequest, m *models.Model, native bool) func(*sseWriter) streamer {
	return func(out *sseWriter) streamer {
		return &relay{c: c, req: req, model: m.Name, sse: out, native: native, object: req.streamObject(), created: time.Now().Unix(),
			cost: func(u *Usage) money.Money { return s.cost(c, u) }}
	}
}

func (rl *relay) relayed() (*Usage, int) { return rl.usage, rl.counted }

// fail ends the stream with an error event and [DONE].
func (rl *relay) fail(e *apierr.Error) { rl.sse.fail(e) }

var errClientGone = errors.New("client gone")

// relay turns backend events into client events.
type relay struct {
	c       *call
	req     *chatRequest
	model   string
	sse     *sseWriter
	native  bool
	object  string // of each chunk: chat.completion.chunk, or text_completion
	created int64

	usage    *Usage // as the backend reported it
	usageRaw json.RawMessage
	counted  int // the gateway's own count of what was relayed (chunk.Counted)
	// fingerprint and tier are the backend's latest system_fingerprint
	// and service_tier, for the native events.
	fingerprint, tier json.RawMessage
	// cost prices a usage for the native final event.
	cost  func(*Usage) money.Money
	final *nativeChunk // native: the finish_reason event, held to carry usage
	ch    chunk.Chunk  // the event being relayed
	out   []byte
}

func (rl *relay) send(v any) error {
	var b []byte
	switch ev := v.(type) {
	case compatChunk:
		b = rl.appendCompat(ev)
	case *nativeChunk:
		if utf8.ValidString(ev.Delta) {
			b = rl.appendNative(ev)
		}
	}
	if b == nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if err := rl.sse.write(b); err != nil {
		return errClientGone
	}
	return nil
}

// nextEvent flushes what was written, then reads the backend's next
// event, its wait counted as upstream time. done is [DONE], or the end of
// a stream that finished without it (some servers close so).
func nextEvent(events *models.Events, out *sseWriter, c *call, finished bool) (data []byte, done bool, err error) {
	if !events.Complete() && out.flush() != nil {
		return nil, false, errClientGone
	}
	waited := time.Now()
	data, err = events.Next()
	c.upstream += time.Since(waited)
	switch {
	case err == io.EOF && finished:
		return nil, true, nil
	case err == io.EOF:
		return nil, false, fmt.Errorf("%w: read: %w", errBrokenStream, errStreamCut)
	case err != nil:
		return nil, false, fmt.Errorf("%w: read: %w", errBrokenStream, err)
	}
	return data, string(data) == "[DONE]", nil
}

// run relays the backend's events to the client until [DONE], the end of
// the stream, or a failure; the time spent waiting on the backend counts
// as upstream time.
func (rl *relay) run(events *models.Events) error {
	finished := false // a finish_reason was seen
	for {
		data, done, err := nextEvent(events, rl.sse, rl.c, finished)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if err := chunk.Parse(data, &rl.ch); err != nil {
			return fmt.Errorf("%w: event: %w", errBrokenStream, err)
		}
		ch := &rl.ch
		if ch.Error != nil {
			return fmt.Errorf("%w: error event: %.300s", errBrokenStream, ch.Error)
		}
		if ch.Created != 0 {
			rl.created = ch.Created
		}
		if ch.Usage != nil {
			var u Usage
			if json.Unmarshal(ch.Usage, &u) == nil {
				rl.usage, rl.usageRaw = &u, append(rl.usageRaw[:0], ch.Usage...)
			}
		}
		if ch.NChoices == 0 {
			continue // the usage chunk: sent at the end, if wanted
		}
		delta := ch.Content
		if ch.Counted > 0 {
			rl.counted += ch.Counted
			if rl.c.ttft == 0 {
				rl.c.ttft = time.Since(rl.c.start) // sent just below; a failed send ends the stream anyway
			}
		}
		rl.keep(&rl.fingerprint, ch.SystemFingerprint)
		rl.keep(&rl.tier, ch.ServiceTier)
		fin := len(ch.Finish) > 0
		rl.c.finish = append(rl.c.finish, ch.Finish...)
		finished = finished || fin
		if rl.native {
			ev := &nativeChunk{ID: rl.c.id, Object: rl.object, Created: rl.created, Model: rl.model,
				SystemFingerprint: rl.fingerprint, ServiceTier: rl.tier, Choices: ch.Choices, Delta: delta}
			if fin {
				if err := rl.flushFinal(); err != nil {
					return err
				}
				ev.Choices = bytes.Clone(ev.Choices) // held past the event's buffer
				rl.final = ev
				continue
			}
			if err := rl.send(ev); err != nil {
				return err
			}
			continue
		}
		ev := compatChunk{ID: rl.c.id, Object: rl.object, Created: rl.created, Model: rl.model,
			SystemFingerprint: ch.SystemFingerprint, ServiceTier: ch.ServiceTier, Choices: ch.Choices}
		if rl.req.IncludeUsage {
			ev.Usage = json.RawMessage("null")
		}
		if err := rl.send(ev); err != nil {
			return err
		}
	}
	return rl.finish()
}

// keep holds a copy of v in *dst when it is new: the event's bytes are
// reused, and a held native event outlives them.
func (rl *relay) keep(dst *json.RawMessage, v []byte) {
	if v != nil && !bytes.Equal(*dst, v) {
		*dst = bytes.Clone(v)
	}
}

// flushFinal sends a held native finish event without usage.
func (rl *relay) flushFinal() error {
	if rl.final == nil {
		return nil
	}
	ev := rl.final
	rl.final = nil
	return rl.send(ev)
}

// finish sends what ends a stream that completed: the native final event
// with usage, or OpenAI's usage chunk if the client asked; then [DONE].
func (rl *relay) finish() error {
	u := rl.usage
	if u == nil {
		u = &Usage{PromptTokens: rl.req.PromptTokens, CompletionTokens: rl.counted}
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	if rl.native {
		ev := rl.final
		if ev == nil {
			ev = &nativeChunk{ID: rl.c.id, Object: rl.object, Created: rl.created, Model: rl.model,
				SystemFingerprint: rl.fingerprint, ServiceTier: rl.tier,
				Choices: json.RawMessage(`[{"index":0,"delta":{},"finish_reason":"stop"}]`)}
		}
		rl.final = nil
		ev.Usage = u.withCost(rl.cost(u))
		if err := rl.send(ev); err != nil {
			return err
		}
	} else if rl.req.IncludeUsage {
		raw := rl.usageRaw
		if raw == nil {
			raw = appendUsage(nil, u)
		}
		if err := rl.send(compatChunk{ID: rl.c.id, Object: rl.object, Created: rl.created,
			Model: rl.model, SystemFingerprint: rl.fingerprint, ServiceTier: rl.tier, Choices: json.RawMessage("[]"), Usage: raw}); err != nil {
			return err
		}
	}
	if rl.sse.event([]byte("[DONE]")) != nil { // written and flushed
		return errClientGone
	}
	return nil
}
