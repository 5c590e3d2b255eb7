package openai

import (
	"encoding/json"
	"unicode/utf8"

	"github.com/obol/obol/money"
)

// OpenAI's usage object, and the gateway's own count where a backend
// reports none.

// Usage is an OpenAI usage object. Its details (cached prompt tokens,
// reasoning tokens) pass through as the backend sent them.
type Usage struct {
	PromptTokens            int             `json:"prompt_tokens"`
	CompletionTokens        int             `json:"completion_tokens"`
	TotalTokens             int             `json:"total_tokens"`
	PromptTokensDetails     json.RawMessage `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails json.RawMessage `json:"completion_tokens_details,omitempty"`
	// Cost, in the native shapes only, is what the request cost (USD);
	// a backend's own "cost" field is not read.
	Cost *money.Money `json:"-"`
}

// WithCost is a copy of u carrying cost, for a native answer.
func (u *Usage) WithCost(cost money.Money) *Usage {
	c := *u
	c.Cost = &cost
	return &c
}

// Details are the cached prompt tokens and reasoning tokens the backend
// reported, 0 where it did not.
func (u *Usage) Details() (cached, reasoning int64) {
	if len(u.PromptTokensDetails) > 0 {
		var d struct {
			CachedTokens int64 `json:"cached_tokens"`
		}
		json.Unmarshal(u.PromptTokensDetails, &d)
		cached = d.CachedTokens
	}
	if len(u.CompletionTokensDetails) > 0 {
		var d struct {
			ReasoningTokens int64 `json:"reasoning_tokens"`
		}
		json.Unmarshal(u.CompletionTokensDetails, &d)
		reasoning = d.ReasoningTokens
	}
	return cached, reasoning
}

// OwnCount is the gateway's own count of a request a backend reported no
// usage for: the prompt estimate, and the completion tokens it counted.
func OwnCount(prompt, completion int) *Usage {
	return &Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
}

// ReadUsage decodes a backend's usage; nil raw leaves u nil.
func ReadUsage(raw []byte, u **Usage) error {
	if raw == nil {
		return nil
	}
	*u = new(Usage)
	return json.Unmarshal(raw, *u)
}

// toolCall is what the gateway reads of a tool call, whole or a piece of
// a streamed one.
type toolCall struct {
	Index    int    `json:"index"`
	ID       string `json:"id"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// CountCompletion is the gateway's own count where a backend reports no
// usage: the prompt estimate, and every choice's text and tool calls
// (names and arguments) at four characters a token.
func CountCompletion(req *Request, choices json.RawMessage) *Usage {
	var cs []struct {
		Text    string `json:"text"` // a legacy completion's
		Message struct {
			Content   string     `json:"content"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
	}
	json.Unmarshal(choices, &cs)
	chars := 0
	for _, ch := range cs {
		chars += utf8.RuneCountInString(ch.Message.Content) + utf8.RuneCountInString(ch.Text)
		for _, tc := range ch.Message.ToolCalls {
			chars += len(tc.Function.Name) + len(tc.Function.Arguments)
		}
	}
	return OwnCount(req.PromptTokens, (chars+3)/4)
}
