package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/obol/obol/wire/openai"
)

// From an Anthropic backend: its usage in obol's terms, its answer as a
// chat completion, and its events as chat chunks, so that every OpenAI
// route relays an Anthropic backend as it relays an OpenAI one.

// backendUsage is a Messages usage object as a backend reports it, in
// any of its shapes: cache writes split by lifetime in cache_creation, or
// only their total (older answers: all five-minute writes).
type backendUsage struct {
	InputTokens              *int64 `json:"input_tokens"`
	OutputTokens             *int64 `json:"output_tokens"`
	CacheCreationInputTokens *int64 `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     *int64 `json:"cache_read_input_tokens"`
	CacheCreation            *struct {
		Ephemeral5m int64 `json:"ephemeral_5m_input_tokens"`
		Ephemeral1h int64 `json:"ephemeral_1h_input_tokens"`
	} `json:"cache_creation"`
}

// Meter is what a Messages answer or stream has reported of its usage:
// message_start's, then each message_delta's fields over it (a field a
// later report leaves out keeps its value).
type Meter struct {
	started                  bool
	input, read, write5m, w1 int64
	output                   int64
	// since is the gateway's count of output tokens relayed since the
	// last report of output_tokens.
	since int
	ended bool // message_delta reported the stop
}

// add takes a usage report.
func (t *Meter) add(u *backendUsage) {
	t.started = true
	if u.InputTokens != nil {
		t.input = *u.InputTokens
	}
	if u.CacheReadInputTokens != nil {
		t.read = *u.CacheReadInputTokens
	}
	switch {
	case u.CacheCreation != nil:
		t.write5m, t.w1 = u.CacheCreation.Ephemeral5m, u.CacheCreation.Ephemeral1h
	case u.CacheCreationInputTokens != nil:
		t.write5m, t.w1 = *u.CacheCreationInputTokens, 0
	}
	if u.OutputTokens != nil {
		t.output, t.since = *u.OutputTokens, 0
	}
}

// Usage is the usage so far in obol's terms (nil before message_start):
// the prompt is every input token, read from a cache, written to one or
// neither; the output is the last reported output_tokens plus the
// gateway's count of what was relayed after that report, for a stream
// cut before its end.
func (t *Meter) Usage() *openai.Usage {
	if !t.started {
		return nil
	}
	prompt := t.input + t.read + t.write5m + t.w1
	completion := t.output + int64(t.since)
	return &openai.Usage{PromptTokens: int(prompt), CompletionTokens: int(completion), TotalTokens: int(prompt + completion),
		PromptTokensDetails: openai.PromptDetails(t.read, t.write5m, t.w1)}
}

// backendMessage is a Messages answer as a backend writes it.
type backendMessage struct {
	ID           string            `json:"id"`
	Content      []json.RawMessage `json:"content"`
	StopReason   string            `json:"stop_reason"`
	StopSequence *string           `json:"stop_sequence"`
	Usage        backendUsage      `json:"usage"`
}

// contentBlock is what the translation reads of a content block.
type contentBlock struct {
	Type     string          `json:"type"`
	Text     string          `json:"text"`
	Thinking string          `json:"thinking"`
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Input    json.RawMessage `json:"input"`
}

// finishReasons are the chat finish reasons of Anthropic's stop reasons.
var finishReasons = map[string]string{
	"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "tool_use": "tool_calls",
	"refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length",
}

func finishOf(stop string) string {
	if f, ok := finishReasons[stop]; ok {
		return f
	}
	return "stop"
}

// ToChat is a Messages answer as the chat completion an OpenAI backend
// would have written, with its usage (Meter) in the chat usage's
// terms: thinking as reasoning_content, tool_use blocks as tool calls,
// the stop sequence as vLLM's stop_reason.
func ToChat(raw []byte) ([]byte, *openai.Usage, error) {
	var m backendMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, nil, fmt.Errorf("a Messages answer: %w", err)
	}
	if m.Content == nil {
		return nil, nil, errors.New("a Messages answer without content")
	}
	var text, thinking string
	var calls []map[string]any
	for _, rb := range m.Content {
		var b contentBlock
		if err := json.Unmarshal(rb, &b); err != nil {
			return nil, nil, fmt.Errorf("a content block: %w", err)
		}
		switch b.Type {
		case "text":
			text += b.Text
		case "thinking":
			thinking += b.Thinking
		case "tool_use":
			args := string(b.Input)
			if args == "" {
				args = "{}"
			}
			calls = append(calls, map[string]any{"id": b.ID, "type": "function", "function": map[string]any{"name": b.Name, "arguments": args}})
		}
	}
	msg := chatMessageOut{Role: "assistant", Content: &text, ToolCalls: calls, ReasoningContent: thinking}
	if text == "" && len(calls) > 0 {
		msg.Content = nil
	}
	var t Meter
	t.add(&m.Usage)
	u := t.Usage()
	out, err := json.Marshal(chatCompletion{ID: m.ID, Object: "chat.completion", Created: time.Now().Unix(),
		Choices: []chatChoiceOut{{Message: msg, FinishReason: finishOf(m.StopReason), StopReason: m.StopSequence}}, Usage: u})
	return out, u, err
}

// chatCompletion is a chat completion in OpenAI's member order.
type chatCompletion struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Choices []chatChoiceOut `json:"choices"`
	Usage   *openai.Usage   `json:"usage"`
}

type chatChoiceOut struct {
	Index        int            `json:"index"`
	Message      chatMessageOut `json:"message"`
	Logprobs     *struct{}      `json:"logprobs"`
	FinishReason string         `json:"finish_reason"`
	StopReason   *string        `json:"stop_reason,omitempty"` // vLLM's: the stop sequence that ended the text
}

type chatMessageOut struct {
	Role             string           `json:"role"`
	Content          *string          `json:"content"`
	ToolCalls        []map[string]any `json:"tool_calls,omitempty"`
	ReasoningContent string           `json:"reasoning_content,omitempty"`
}
