package anthropic

import (
	"encoding/json"
	"fmt"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/wire/openai"
)

// stream turns a chat stream into the Messages API's events:
// message_start and ping, then each content block (text, or a tool call
// with its arguments as input_json_delta) started, continued and stopped
// in turn, then message_delta with the stop reason and the whole usage,
// and message_stop.
type stream struct {
	out    openai.Sink
	turn   *openai.Turn
	ar     *Request
	model  string
	prompt int // the prompt estimate: message_start's input_tokens until the backend counts it

	block   int // the open block's index, -1 for none
	blocks  int // blocks begun
	kind    string
	calls   map[int]int // a backend tool call's index → its block
	finish  string
	stopSeq json.RawMessage
	openai.Tally
}

// NewStream relays a chat stream to out as ar's Messages events; prompt
// is the prompt estimate, the usage where the backend reports none.
func NewStream(out openai.Sink, turn *openai.Turn, ar *Request, model string, prompt int) openai.Streamer {
	return &stream{out: out, turn: turn, ar: ar, model: model, prompt: prompt, block: -1, calls: map[int]int{}}
}

// emit writes one event: its type is its name.
func (st *stream) emit(typ string, v any) error {
	b, _ := json.Marshal(v)
	if st.out.WriteNamed(typ, b) != nil {
		return openai.ErrClientGone
	}
	return nil
}

// Fail ends a started stream with an error event.
func (st *stream) Fail(e *apierr.Error) {
	if st.emit("error", ErrorBody(e, "")) == nil {
		st.out.Flush()
	}
}

// Run relays the chat stream as Messages events.
func (st *stream) Run(events openai.Events) error {
	if err := st.start(); err != nil {
		return err
	}
	finished := false
	for {
		data, done, err := openai.NextEvent(events, st.out, st.turn, finished)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if err := st.event(data); err != nil {
			return err
		}
		finished = finished || st.finish != ""
	}
	return st.end()
}

// start sends message_start, its usage the prompt estimate (the backend
// counts the prompt at the end; message_delta carries its count), and a
// ping.
func (st *stream) start() error {
	msg := Message{ID: st.turn.ID, Type: "message", Role: "assistant", Model: st.model, Content: []json.RawMessage{},
		Usage: Usage{InputTokens: st.prompt}}
	if err := st.emit("message_start", messageStart{"message_start", msg}); err != nil {
		return err
	}
	return st.emit("ping", typeOnly{"ping"})
}

// streamChoice is what the events need of a chunk's first choice.
type streamChoice struct {
	Index int `json:"index"`
	Delta struct {
		Content   string     `json:"content"`
		Refusal   string     `json:"refusal"`
		ToolCalls []toolCall `json:"tool_calls"`
	} `json:"delta"`
	FinishReason *string         `json:"finish_reason"`
	StopReason   json.RawMessage `json:"stop_reason"`
}

// event turns one chat chunk into Messages events.
func (st *stream) event(data []byte) error {
	raw, err := st.Read(data, st.turn)
	if err != nil || raw == nil {
		return err
	}
	var choices []streamChoice
	if err := json.Unmarshal(raw, &choices); err != nil {
		return fmt.Errorf("%w: choices: %w", openai.ErrBrokenStream, err)
	}
	for i := range choices {
		if err := st.choice(&choices[i]); err != nil {
			return err
		}
	}
	return nil
}

// choice relays choice 0's pieces: a Messages answer has one.
func (st *stream) choice(d *streamChoice) error {
	if d.Index != 0 {
		return nil
	}
	if d.FinishReason != nil && *d.FinishReason != "" {
		st.finish, st.stopSeq = *d.FinishReason, d.StopReason
		st.turn.Finish = append(st.turn.Finish, st.finish)
	}
	if text := d.Delta.Content + d.Delta.Refusal; text != "" {
		if err := st.text(text); err != nil {
			return err
		}
	}
	for _, tc := range d.Delta.ToolCalls {
		if err := st.toolPiece(&tc); err != nil {
			return err
		}
	}
	return nil
}

// text relays text, in the open text block or a new one.
func (st *stream) text(s string) error {
	if st.kind != "text" {
		if err := st.open("text", textBlock("")); err != nil {
			return err
		}
	}
	return st.emit("content_block_delta", blockDelta{"content_block_delta", st.block, delta{Type: "text_delta", Text: &s}})
}

// toolPiece relays a piece of a tool call: a new call opens its tool_use
// block; its arguments follow as input_json_delta.
func (st *stream) toolPiece(tc *toolCall) error {
	idx, ok := st.calls[tc.Index]
	if !ok {
		id := toolUseID(tc.ID, st.turn.ID, len(st.calls))
		if err := st.open("tool_use", toolUseBlock(id, tc.Function.Name, json.RawMessage("{}"))); err != nil {
			return err
		}
		idx = st.block
		st.calls[tc.Index] = idx
	}
	if tc.Function.Arguments == "" {
		return nil
	}
	return st.emit("content_block_delta", blockDelta{"content_block_delta", idx, delta{Type: "input_json_delta", PartialJSON: &tc.Function.Arguments}})
}

// open stops the open block and starts the next.
func (st *stream) open(kind string, block json.RawMessage) error {
	if err := st.stop(); err != nil {
		return err
	}
	st.block, st.kind = st.blocks, kind
	st.blocks++
	return st.emit("content_block_start", blockStart{"content_block_start", st.block, block})
}

// stop stops the open block, if one is.
func (st *stream) stop() error {
	if st.block < 0 {
		return nil
	}
	i := st.block
	st.block, st.kind = -1, ""
	return st.emit("content_block_stop", blockStop{"content_block_stop", i})
}

// end stops the last block and sends message_delta, with the stop reason
// and the whole usage (the backend's, or the gateway's own count), and
// message_stop.
func (st *stream) end() error {
	if err := st.stop(); err != nil {
		return err
	}
	u := st.Usage
	if u == nil {
		u = openai.OwnCount(st.prompt, st.Counted)
	}
	reason, seq := st.ar.stopReason(st.finish, st.stopSeq)
	md := messageDelta{Type: "message_delta", Usage: UsageOf(u)}
	md.Delta.StopReason, md.Delta.StopSequence = reason, seq
	if err := st.emit("message_delta", md); err != nil {
		return err
	}
	if err := st.emit("message_stop", typeOnly{"message_stop"}); err != nil {
		return err
	}
	if st.out.Flush() != nil {
		return openai.ErrClientGone
	}
	return nil
}

// The events, their members in Anthropic's order.
type (
	typeOnly struct {
		Type string `json:"type"`
	}
	messageStart struct {
		Type    string  `json:"type"`
		Message Message `json:"message"`
	}
	blockStart struct {
		Type         string          `json:"type"`
		Index        int             `json:"index"`
		ContentBlock json.RawMessage `json:"content_block"`
	}
	blockDelta struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
		Delta delta  `json:"delta"`
	}
	delta struct {
		Type        string  `json:"type"`
		Text        *string `json:"text,omitempty"`
		PartialJSON *string `json:"partial_json,omitempty"`
	}
	blockStop struct {
		Type  string `json:"type"`
		Index int    `json:"index"`
	}
	messageDelta struct {
		Type  string `json:"type"`
		Delta struct {
			StopReason   *string `json:"stop_reason"`
			StopSequence *string `json:"stop_sequence"`
		} `json:"delta"`
		Usage Usage `json:"usage"`
	}
)
