package anthropic

import (
	"encoding/json"
	"fmt"

	"github.com/obol/obol/wire/openai"
)

// event is what the translation reads of a Messages stream event.
type event struct {
	Type    string `json:"type"`
	Index   int    `json:"index"`
	Message *struct {
		ID    string       `json:"id"`
		Usage backendUsage `json:"usage"`
	} `json:"message"`
	ContentBlock *contentBlock `json:"content_block"`
	Delta        *struct {
		Type         string  `json:"type"`
		Text         string  `json:"text"`
		Thinking     string  `json:"thinking"`
		PartialJSON  string  `json:"partial_json"`
		StopReason   string  `json:"stop_reason"`
		StopSequence *string `json:"stop_sequence"`
	} `json:"delta"`
	Usage *backendUsage   `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// Read takes one event's usage reports into m: message_start's and
// message_delta's; a content delta counts one output token toward a cut
// stream's count. It returns the event, nil for one it cannot read.
func (m *Meter) Read(data []byte) *event {
	var ev event
	if json.Unmarshal(data, &ev) != nil {
		return nil
	}
	switch ev.Type {
	case "message_start":
		if ev.Message != nil {
			m.add(&ev.Message.Usage)
		}
	case "content_block_delta":
		m.since++
	case "message_delta":
		if ev.Usage != nil {
			m.add(ev.Usage)
		}
		m.ended = true
	}
	return &ev
}

// ChatEvents reads a Messages stream as chat chunks, as an OpenAI
// backend asked for usage would have sent them: the role, text, thinking
// as reasoning_content, each tool_use block as a tool call (its index
// counted among tool calls) with its arguments in pieces, the finish
// reason, the usage, and [DONE] at message_stop. An error event is a
// chunk carrying the error.
type ChatEvents struct {
	src   openai.Events
	Meter Meter
	id    string
	calls map[int]int // a tool_use block's index → its tool call's
	queue [][]byte
}

// NewChatEvents reads src, a Messages stream.
func NewChatEvents(src openai.Events) *ChatEvents {
	return &ChatEvents{src: src, calls: map[int]int{}}
}

// Complete reports whether the next event is at hand.
func (c *ChatEvents) Complete() bool { return len(c.queue) > 0 || c.src.Complete() }

// Next is the next chat chunk's data.
func (c *ChatEvents) Next() ([]byte, error) {
	for len(c.queue) == 0 {
		data, err := c.src.Next()
		if err != nil {
			return nil, err
		}
		if err := c.translate(data); err != nil {
			return nil, err
		}
	}
	d := c.queue[0]
	c.queue = c.queue[1:]
	return d, nil
}

// chunk queues a chat chunk with one choice's delta and finish.
func (c *ChatEvents) chunk(delta map[string]any, finish any, extra map[string]any) {
	choice := map[string]any{"index": 0, "delta": delta, "logprobs": nil, "finish_reason": finish}
	for k, v := range extra {
		choice[k] = v
	}
	b, _ := json.Marshal(map[string]any{"id": c.id, "object": "chat.completion.chunk", "choices": []any{choice}})
	c.queue = append(c.queue, b)
}

func (c *ChatEvents) translate(data []byte) error {
	ev := c.Meter.Read(data)
	if ev == nil {
		return fmt.Errorf("%w: an unreadable event: %.200q", openai.ErrBrokenStream, data)
	}
	switch ev.Type {
	case "message_start":
		if ev.Message != nil {
			c.id = ev.Message.ID
		}
		c.chunk(map[string]any{"role": "assistant", "content": ""}, nil, nil)
	case "content_block_start":
		if b := ev.ContentBlock; b != nil && b.Type == "tool_use" {
			k := len(c.calls)
			c.calls[ev.Index] = k
			c.chunk(map[string]any{"tool_calls": []any{map[string]any{"index": k, "id": b.ID, "type": "function",
				"function": map[string]any{"name": b.Name, "arguments": ""}}}}, nil, nil)
		} else if b != nil && b.Type == "text" && b.Text != "" {
			c.chunk(map[string]any{"content": b.Text}, nil, nil)
		}
	case "content_block_delta":
		c.delta(ev)
	case "message_delta":
		if ev.Delta != nil {
			var extra map[string]any
			if ev.Delta.StopSequence != nil {
				extra = map[string]any{"stop_reason": *ev.Delta.StopSequence}
			}
			c.chunk(map[string]any{}, finishOf(ev.Delta.StopReason), extra)
		}
		b, _ := json.Marshal(map[string]any{"id": c.id, "object": "chat.completion.chunk", "choices": []any{}, "usage": c.Meter.Usage()})
		c.queue = append(c.queue, b)
	case "message_stop":
		c.queue = append(c.queue, []byte("[DONE]"))
	case "error":
		b, _ := json.Marshal(map[string]any{"error": ev.Error})
		c.queue = append(c.queue, b)
	}
	return nil
}

// delta queues a content delta: text, thinking or a tool's arguments.
func (c *ChatEvents) delta(ev *event) {
	d := ev.Delta
	if d == nil {
		return
	}
	switch d.Type {
	case "text_delta":
		c.chunk(map[string]any{"content": d.Text}, nil, nil)
	case "thinking_delta":
		c.chunk(map[string]any{"reasoning_content": d.Thinking}, nil, nil)
	case "input_json_delta":
		if k, ok := c.calls[ev.Index]; ok && d.PartialJSON != "" {
			c.chunk(map[string]any{"tool_calls": []any{map[string]any{"index": k, "function": map[string]any{"arguments": d.PartialJSON}}}}, nil, nil)
		}
	}
}
