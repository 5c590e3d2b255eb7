package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/wire/openai"
)

// Messages to an Anthropic backend: the client's request and the
// backend's answer and events pass as they were written, but for the
// model's name (and the answer's id), so that cache_control, thinking
// blocks and their signatures, documents and citations reach each side
// byte for byte.

// members rewrites the top-level members of a JSON object: set replaces
// a member's value (adding none that is absent), a nil value drops the
// member. Every other member is kept byte for byte; only whitespace
// between members may go.
func members(obj []byte, set map[string][]byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(obj))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	out := append(make([]byte, 0, len(obj)+64), '{')
	first := true
	for dec.More() {
		start := dec.InputOffset()
		t, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		keyEnd := dec.InputOffset()
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		seg := obj[start:dec.InputOffset()]
		if val, ok := set[key]; ok {
			if val == nil {
				continue
			}
			// the key as written, then the new value
			seg = append(append(bytes.Clone(obj[start:keyEnd]), ':'), val...)
		}
		if first {
			seg = bytes.TrimLeft(seg, " \t\r\n,")
		} else if !bytes.HasPrefix(bytes.TrimLeft(seg, " \t\r\n"), []byte(",")) {
			out = append(out, ',')
		}
		out = append(out, seg...)
		first = false
	}
	return append(out, '}'), nil
}

// PassBody is a Messages request as an Anthropic backend gets it: the
// client's bytes without "model" (the backend's own goes first), and
// max_tokens the output cap admission held (lowered to fit the window,
// see openai.Request.FitWindow).
func PassBody(body []byte, maxTokens int) ([]byte, error) {
	set := map[string][]byte{"model": nil, "max_tokens": strconv.AppendInt(nil, int64(maxTokens), 10)}
	if t, ok := thinkingBudget(body); ok && t.BudgetTokens >= maxTokens {
		// Anthropic wants budget_tokens below max_tokens, and at least
		// 1,024: a cap lowered to fit the window lowers it too, or, with
		// no room for that, leaves thinking out.
		if maxTokens > minThinkingBudget {
			t.BudgetTokens = maxTokens - 1
			set["thinking"], _ = json.Marshal(t)
		} else {
			set["thinking"] = nil
		}
	}
	out, err := members(body, set)
	if err != nil {
		return nil, apierr.BadRequest("", "the request body is not a JSON object")
	}
	return out, nil
}

// minThinkingBudget is the least budget_tokens Anthropic takes.
const minThinkingBudget = 1024

// thinking is an enabled thinking setting with its budget.
type thinking struct {
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens"`
}

// thinkingBudget reads the body's thinking when it is enabled with a
// budget.
func thinkingBudget(body []byte) (thinking, bool) {
	var b struct {
		Thinking *thinking `json:"thinking"`
	}
	if json.Unmarshal(body, &b) != nil || b.Thinking == nil || b.Thinking.Type != "enabled" || b.Thinking.BudgetTokens <= 0 {
		return thinking{}, false
	}
	return *b.Thinking, true
}

// PassAnswer is a backend's Messages answer with the gateway's id and
// the public model name, and its usage in obol's terms.
func PassAnswer(raw []byte, id, model string) ([]byte, *openai.Usage, error) {
	_, u, err := ToChat(raw)
	if err != nil {
		return nil, nil, err
	}
	out, err := members(raw, renamed(id, model))
	return out, u, err
}

func renamed(id, model string) map[string][]byte {
	qid, _ := json.Marshal(id)
	qm, _ := json.Marshal(model)
	return map[string][]byte{"id": qid, "model": qm}
}

// passStream relays a backend's Messages events as they were written,
// message_start's id and model replaced, each event flushed whole, and
// meters their usage.
type passStream struct {
	out   openai.Sink
	turn  *openai.Turn
	id    []byte
	meter *Meter
	set   map[string][]byte
}

// NewPassStream relays a Messages stream to out; meter takes its usage.
func NewPassStream(out openai.Sink, turn *openai.Turn, model string, meter *Meter) openai.Streamer {
	return &passStream{out: out, turn: turn, meter: meter, set: renamed(turn.ID, model)}
}

// Relayed is the metered usage: exact at the end, and for a stream cut
// short what was reported plus the deltas relayed since.
func (ps *passStream) Relayed() (*openai.Usage, int) { return ps.meter.Usage(), ps.meter.since }

// Fail ends the stream with an error event in Anthropic's shape.
func (ps *passStream) Fail(e *apierr.Error) {
	b, _ := json.Marshal(ErrorBody(e, ""))
	if ps.out.WriteNamed("error", b) == nil {
		ps.out.Flush()
	}
}

// Run relays events until message_stop or the end of the stream.
func (ps *passStream) Run(events openai.Events) error {
	for {
		data, done, err := openai.NextEvent(events, ps.out, ps.turn, ps.meter.ended)
		if err != nil || done {
			return err
		}
		ev := ps.meter.Read(data)
		switch {
		case ev == nil:
			return fmt.Errorf("%w: an unreadable event: %.200q", openai.ErrBrokenStream, data)
		case ev.Type == "error":
			return fmt.Errorf("%w: error event: %.300s", openai.ErrBrokenStream, ev.Error)
		case ev.Type == "message_start":
			if data, err = ps.renamedStart(data); err != nil {
				return fmt.Errorf("%w: message_start: %w", openai.ErrBrokenStream, err)
			}
		case ev.Type == "content_block_delta" && ps.turn.TTFT == 0:
			ps.turn.TTFT = time.Since(ps.turn.Start)
		}
		if ps.out.WriteNamed(ev.Type, data) != nil {
			return openai.ErrClientGone
		}
		if ev.Type == "message_stop" {
			if ps.out.Flush() != nil {
				return openai.ErrClientGone
			}
			return nil
		}
	}
}

// renamedStart is message_start with the message's id and model replaced.
func (ps *passStream) renamedStart(data []byte) ([]byte, error) {
	var ev struct {
		Message json.RawMessage `json:"message"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, err
	}
	msg, err := members(ev.Message, ps.set)
	if err != nil {
		return nil, err
	}
	return members(data, map[string][]byte{"message": msg})
}
