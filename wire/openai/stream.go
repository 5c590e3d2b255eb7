package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/money"
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

// nativeChunk is the native stream event: an OpenAI chunk plus
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
	// ErrBrokenStream is a backend stream that failed after it began: an
	// error event, an unreadable event, a read that failed.
	ErrBrokenStream = errors.New("backend stream broken")
	// ErrClientGone is a client that left mid-stream: a write failed.
	ErrClientGone = errors.New("client gone")
)

// Sink is where a translation writes a client's stream: the gateway's
// SSE writer. Each event is written whole; Flush sends what was written.
type Sink interface {
	// Write writes one data event; WriteNamed one with an event: name.
	Write(data []byte) error
	WriteNamed(name string, data []byte) error
	Flush() error
	// Event writes one data event and flushes it.
	Event(data []byte) error
	// Fail ends a started stream with e, as an error event and [DONE].
	Fail(e *apierr.Error)
}

// Events are a backend's stream events (models.Events).
type Events interface {
	Next() ([]byte, error)
	// Complete reports whether every event is already read in (the
	// answer was read whole): nothing is flushed between them then.
	Complete() bool
}

// Turn is what a translation knows of the request and reports of it.
type Turn struct {
	ID    string    // the gateway's id of the request: each event's id
	Start time.Time // when it arrived
	// TTFT is set when the first token is relayed: the time from Start.
	TTFT time.Duration
	// Finish are the finish reasons the backend gave.
	Finish []string
	// Upstream is the time spent waiting on the backend's events.
	Upstream time.Duration
}

// Streamer turns a backend's events into a client's stream: the chat
// relay (native or OpenAI's chunks) or the Responses events.
type Streamer interface {
	// Run relays events until the backend's stream ends.
	Run(events Events) error
	// Relayed is what the stream carried: the backend's usage (nil if it
	// sent none) and the gateway's own count of completion tokens.
	Relayed() (*Usage, int)
	// Fail ends a started stream with e.
	Fail(e *apierr.Error)
}

func (rl *relay) Relayed() (*Usage, int) { return rl.usage, rl.counted }

// Fail ends the stream with an error event and [DONE].
func (rl *relay) Fail(e *apierr.Error) { rl.sink.Fail(e) }

// relay turns backend events into client events.
type relay struct {
	turn    *Turn
	req     *Request
	model   string
	sink    Sink
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
	ev    nativeChunk  // the native event being sent, reused chunk to chunk
	cev   compatChunk  // the OpenAI-shaped one, likewise
	ch    chunk.Chunk  // the event being relayed
	out   []byte
}

// sendNative sends a native chunk: hand-encoded, or by json.Marshal for a
// delta that is not UTF-8 (which it repairs as the encoder would not).
func (rl *relay) sendNative(ev *nativeChunk) error {
	var b []byte
	if utf8.ValidString(ev.Delta) {
		b = rl.appendNative(ev)
	} else {
		var err error
		if b, err = json.Marshal(ev); err != nil {
			return err
		}
	}
	return rl.write(b)
}

// sendCompat sends an OpenAI-shaped chunk; typed, as sendNative, so that
// no event is boxed into an interface on its way.
func (rl *relay) sendCompat(ev *compatChunk) error { return rl.write(rl.appendCompat(ev)) }

func (rl *relay) write(b []byte) error {
	if err := rl.sink.Write(b); err != nil {
		return ErrClientGone
	}
	return nil
}

// NextEvent flushes what was written, then reads the backend's next
// event, its wait counted as upstream time. done is [DONE], or the end of
// a stream that finished without it (some servers close so).
func NextEvent(events Events, out Sink, turn *Turn, finished bool) (data []byte, done bool, err error) {
	if !events.Complete() && out.Flush() != nil {
		return nil, false, ErrClientGone
	}
	waited := time.Now()
	data, err = events.Next()
	turn.Upstream += time.Since(waited)
	switch {
	case err == io.EOF && finished:
		return nil, true, nil
	case err == io.EOF:
		return nil, false, fmt.Errorf("%w: read: %w", ErrBrokenStream, errStreamCut)
	case err != nil:
		return nil, false, fmt.Errorf("%w: read: %w", ErrBrokenStream, err)
	}
	return data, string(data) == "[DONE]", nil
}

// run relays the backend's events to the client until [DONE], the end of
// the stream, or a failure; the time spent waiting on the backend counts
// as upstream time.
func (rl *relay) Run(events Events) error {
	finished := false // a finish_reason was seen
	for {
		data, done, err := NextEvent(events, rl.sink, rl.turn, finished)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if err := chunk.Parse(data, &rl.ch); err != nil {
			return fmt.Errorf("%w: event: %w", ErrBrokenStream, err)
		}
		ch := &rl.ch
		if ch.Error != nil {
			return fmt.Errorf("%w: error event: %.300s", ErrBrokenStream, ch.Error)
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
			if rl.turn.TTFT == 0 {
				rl.turn.TTFT = time.Since(rl.turn.Start) // sent just below; a failed send ends the stream anyway
			}
		}
		rl.keep(&rl.fingerprint, ch.SystemFingerprint)
		rl.keep(&rl.tier, ch.ServiceTier)
		fin := len(ch.Finish) > 0
		rl.turn.Finish = append(rl.turn.Finish, ch.Finish...)
		finished = finished || fin
		if rl.native {
			// One event reused for the stream's chunks; the held final one
			// is its own.
			rl.ev = nativeChunk{ID: rl.turn.ID, Object: rl.object, Created: rl.created, Model: rl.model,
				SystemFingerprint: rl.fingerprint, ServiceTier: rl.tier, Choices: ch.Choices, Delta: delta}
			if fin {
				if err := rl.flushFinal(); err != nil {
					return err
				}
				final := rl.ev
				final.Choices = bytes.Clone(final.Choices) // held past the event's buffer
				rl.final = &final
				continue
			}
			if err := rl.sendNative(&rl.ev); err != nil {
				return err
			}
			continue
		}
		rl.cev = compatChunk{ID: rl.turn.ID, Object: rl.object, Created: rl.created, Model: rl.model,
			SystemFingerprint: ch.SystemFingerprint, ServiceTier: ch.ServiceTier, Choices: ch.Choices}
		if rl.req.IncludeUsage {
			rl.cev.Usage = json.RawMessage("null")
		}
		if err := rl.sendCompat(&rl.cev); err != nil {
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
	return rl.sendNative(ev)
}

// finish sends what ends a stream that completed: the native final event
// with usage, or OpenAI's usage chunk if the client asked; then [DONE].
func (rl *relay) finish() error {
	u := rl.usage
	if u == nil {
		u = OwnCount(rl.req.PromptTokens, rl.counted)
	}
	if rl.native {
		ev := rl.final
		if ev == nil {
			ev = &nativeChunk{ID: rl.turn.ID, Object: rl.object, Created: rl.created, Model: rl.model,
				SystemFingerprint: rl.fingerprint, ServiceTier: rl.tier,
				Choices: json.RawMessage(`[{"index":0,"delta":{},"finish_reason":"stop"}]`)}
		}
		rl.final = nil
		ev.Usage = u.WithCost(rl.cost(u))
		if err := rl.sendNative(ev); err != nil {
			return err
		}
	} else if rl.req.IncludeUsage {
		raw := rl.usageRaw
		if raw == nil {
			raw = AppendUsage(nil, u)
		}
		if err := rl.sendCompat(&compatChunk{ID: rl.turn.ID, Object: rl.object, Created: rl.created,
			Model: rl.model, SystemFingerprint: rl.fingerprint, ServiceTier: rl.tier, Choices: json.RawMessage("[]"), Usage: raw}); err != nil {
			return err
		}
	}
	if rl.sink.Event([]byte("[DONE]")) != nil { // written and flushed
		return ErrClientGone
	}
	return nil
}

// NewChatStream is the chat relay of one request: native events or
// OpenAI's chunks (object, as req says), with turn's id and the public
// model name; cost prices the usage the native final event carries.
func NewChatStream(sink Sink, turn *Turn, req *Request, model string, native bool, cost func(*Usage) money.Money) Streamer {
	return &relay{turn: turn, req: req, model: model, sink: sink, native: native, object: req.StreamObject(),
		created: time.Now().Unix(), cost: cost}
}
