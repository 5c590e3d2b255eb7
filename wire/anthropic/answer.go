package anthropic

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/wire/openai"
)

// Usage is Anthropic's usage object: input_tokens are the prompt's
// tokens neither read from a cache nor written to one;
// cache_creation_input_tokens are the writes, split by lifetime in
// cache_creation.
type Usage struct {
	InputTokens              int           `json:"input_tokens"`
	CacheCreationInputTokens int           `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int           `json:"cache_read_input_tokens"`
	CacheCreation            CacheCreation `json:"cache_creation"`
	OutputTokens             int           `json:"output_tokens"`
}

// CacheCreation is the cache writes by lifetime.
type CacheCreation struct {
	Ephemeral5m int `json:"ephemeral_5m_input_tokens"`
	Ephemeral1h int `json:"ephemeral_1h_input_tokens"`
}

// UsageOf is u in Anthropic's terms.
func UsageOf(u *openai.Usage) Usage {
	uncached, cached, w5, w1 := u.Tokens().Uncached()
	return Usage{InputTokens: int(uncached), OutputTokens: u.CompletionTokens, CacheReadInputTokens: int(cached),
		CacheCreationInputTokens: int(w5 + w1), CacheCreation: CacheCreation{Ephemeral5m: int(w5), Ephemeral1h: int(w1)}}
}

// Message is the Messages API's answer.
type Message struct {
	ID           string            `json:"id"`
	Type         string            `json:"type"`
	Role         string            `json:"role"`
	Model        string            `json:"model"`
	Content      []json.RawMessage `json:"content"`
	StopReason   *string           `json:"stop_reason"`
	StopSequence *string           `json:"stop_sequence"`
	Usage        Usage             `json:"usage"`
}

// choice is what an answer needs of a chat completion's first choice.
type choice struct {
	Message struct {
		Content   *string    `json:"content"`
		Refusal   string     `json:"refusal"`
		ToolCalls []toolCall `json:"tool_calls"`
	} `json:"message"`
	FinishReason string `json:"finish_reason"`
	// StopReason is vLLM's: the stop sequence that ended the text.
	StopReason json.RawMessage `json:"stop_reason"`
}

type toolCall struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// Answer is the Messages answer to ar of a complete chat completion,
// with usage u (the backend's, or the gateway's own count).
func (ar *Request) Answer(id, model string, comp *chunk.Chunk, u *openai.Usage) (*Message, error) {
	var choices []choice
	if err := json.Unmarshal(comp.Choices, &choices); err != nil || len(choices) == 0 {
		return nil, errors.New("no choice in the answer")
	}
	ch := &choices[0]
	msg := &Message{ID: id, Type: "message", Role: "assistant", Model: model, Content: []json.RawMessage{}, Usage: UsageOf(u)}
	text := ch.Message.Refusal
	if ch.Message.Content != nil {
		text = *ch.Message.Content + text
	}
	if text != "" {
		msg.Content = append(msg.Content, textBlock(text))
	}
	for i, tc := range ch.Message.ToolCalls {
		msg.Content = append(msg.Content, toolUseBlock(toolUseID(tc.ID, id, i), tc.Function.Name, toolInput(tc.Function.Arguments)))
	}
	msg.StopReason, msg.StopSequence = ar.stopReason(ch.FinishReason, ch.StopReason)
	return msg, nil
}

func textBlock(text string) json.RawMessage {
	b, _ := json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{"text", text})
	return b
}

func toolUseBlock(id, name string, input json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(struct {
		Type  string          `json:"type"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	}{"tool_use", id, name, input})
	return b
}

// toolUseID is the backend's id of a call, or one made of the request's
// where the backend gave none.
func toolUseID(backend, request string, i int) string {
	if backend != "" {
		return backend
	}
	return fmt.Sprintf("toolu_%s_%d", request, i)
}

// toolInput is a call's arguments as a tool_use block's input: an
// object, {} where the backend's arguments are empty or not an object.
func toolInput(args string) json.RawMessage {
	fields, err := jsonobj.Members([]byte(args))
	if err != nil || fields == nil {
		return json.RawMessage("{}")
	}
	return json.RawMessage(args)
}

// stopReason is the Messages stop reason of a Chat Completions finish
// reason; with vLLM's stop_reason naming one of ar's stop sequences,
// stop_sequence and it.
func (ar *Request) stopReason(finish string, backendStop json.RawMessage) (*string, *string) {
	reason := "end_turn"
	switch finish {
	case "length":
		reason = "max_tokens"
	case "tool_calls", "function_call":
		reason = "tool_use"
	case "content_filter":
		reason = "refusal"
	case "stop":
		var seq string
		if json.Unmarshal(backendStop, &seq) == nil && slices.Contains(ar.StopSequences, seq) {
			reason = "stop_sequence"
			return &reason, &seq
		}
	}
	return &reason, nil
}
