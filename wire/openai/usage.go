package openai

import (
	"encoding/json"
	"fmt"
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

// Details are what a usage object says of its tokens beyond the totals,
// 0 where it is silent: prompt_tokens_details' cache reads
// (cached_tokens) and cache writes (cache_write_tokens, of which
// cache_write_1h_tokens were written for an hour), and
// completion_tokens_details' reasoning_tokens.
type Details struct {
	Cached, CacheWrite5m, CacheWrite1h, Reasoning int64
}

// Details reads u's details.
func (u *Usage) Details() Details {
	var d Details
	if len(u.PromptTokensDetails) > 0 {
		var p struct {
			CachedTokens       int64 `json:"cached_tokens"`
			CacheWriteTokens   int64 `json:"cache_write_tokens"`
			CacheWrite1hTokens int64 `json:"cache_write_1h_tokens"`
		}
		json.Unmarshal(u.PromptTokensDetails, &p)
		d.Cached = p.CachedTokens
		d.CacheWrite1h = min(max(p.CacheWrite1hTokens, 0), max(p.CacheWriteTokens, 0))
		d.CacheWrite5m = max(p.CacheWriteTokens, 0) - d.CacheWrite1h
	}
	if len(u.CompletionTokensDetails) > 0 {
		var c struct {
			ReasoningTokens int64 `json:"reasoning_tokens"`
		}
		json.Unmarshal(u.CompletionTokensDetails, &c)
		d.Reasoning = c.ReasoningTokens
	}
	return d
}

// Tokens are u's tokens as prices take them.
func (u *Usage) Tokens() money.Tokens {
	d := u.Details()
	return money.Tokens{Prompt: int64(u.PromptTokens), Cached: d.Cached, Write5m: d.CacheWrite5m,
		Write1h: d.CacheWrite1h, Completion: int64(u.CompletionTokens)}
}

// PromptDetails is a prompt_tokens_details object carrying cache reads
// and writes, as obol writes it where it makes the usage itself; nil
// when there are none.
func PromptDetails(cached, write5m, write1h int64) json.RawMessage {
	if cached == 0 && write5m == 0 && write1h == 0 {
		return nil
	}
	if write5m == 0 && write1h == 0 {
		return fmt.Appendf(nil, `{"cached_tokens":%d}`, cached)
	}
	return fmt.Appendf(nil, `{"cached_tokens":%d,"cache_write_tokens":%d,"cache_write_1h_tokens":%d}`, cached, write5m+write1h, write1h)
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
