package openai

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/obol/obol/internal/chunk"
)

// TestChunkEncoding: the hand-written chunks are what json.Marshal makes
// of the same structs.
func TestChunkEncoding(t *testing.T) {
	rl := &relay{object: "chat.completion.chunk"}
	choices := json.RawMessage(`[{"index":0,"delta":{"content":"Hi \"there\""},"finish_reason":null}]`)
	compat := compatChunk{ID: "chat_01X", Object: "chat.completion.chunk", Created: 1738857600, Model: "hermes",
		SystemFingerprint: json.RawMessage(`"fp_1"`), ServiceTier: json.RawMessage(`"default"`), Choices: choices, Usage: json.RawMessage("null")}
	native := &nativeChunk{ID: "chat_01X", Object: "chat.completion.chunk", Created: 1738857600, Model: "pluto",
		SystemFingerprint: json.RawMessage(`"fp_1"`), ServiceTier: json.RawMessage(`"default"`), Choices: choices, Delta: "Hi \"there\"\n<b>"}
	final := &nativeChunk{ID: "chat_01X", Object: "chat.completion.chunk", Created: 1738857600, Model: "pluto",
		Choices: json.RawMessage(`[{"index":0,"delta":{},"finish_reason":"stop"}]`), Usage: &Usage{PromptTokens: 9, CompletionTokens: 20, TotalTokens: 29}}
	for _, tt := range []struct {
		got  []byte
		want any
	}{
		{append([]byte(nil), rl.appendCompat(&compat)...), compat},
		{append([]byte(nil), rl.appendNative(native)...), native},
		{append([]byte(nil), rl.appendNative(final)...), final},
	} {
		want, _ := json.Marshal(tt.want)
		if string(tt.got) != string(want) {
			t.Errorf("\n got %s\nwant %s", tt.got, want)
		}
	}
}

// TestResponseEncoding: the native answer is what json.Marshal makes of
// nativeResponse; the OpenAI one keeps every backend field but the
// gateway's id, object and model, and adds usage only where none came.
func TestResponseEncoding(t *testing.T) {
	choices := json.RawMessage(`[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}]`)
	u := &Usage{PromptTokens: 28, CompletionTokens: 12, TotalTokens: 40}
	got := AppendNativeResponse(nil, "chat_01X", 1738857600, "hermes", &chunk.Chunk{Choices: choices}, u)
	want, _ := json.Marshal(nativeResponse{ID: "chat_01X", Object: "chat.completion", Created: 1738857600, Model: "hermes", Choices: choices, Usage: *u})
	if string(got) != string(want) {
		t.Errorf("native:\n got %s\nwant %s", got, want)
	}
	// With the backend's fingerprint, service tier and usage details.
	ud := *u
	ud.PromptTokensDetails, ud.CompletionTokensDetails = json.RawMessage(`{"cached_tokens":20}`), json.RawMessage(`{"reasoning_tokens":4}`)
	comp := &chunk.Chunk{Choices: choices, SystemFingerprint: []byte(`"fp_1"`), ServiceTier: []byte(`"default"`)}
	got = AppendNativeResponse(nil, "chat_01X", 1738857600, "hermes", comp, &ud)
	want, _ = json.Marshal(nativeResponse{ID: "chat_01X", Object: "chat.completion", Created: 1738857600, Model: "hermes",
		SystemFingerprint: comp.SystemFingerprint, ServiceTier: comp.ServiceTier, Choices: choices, Usage: ud})
	if string(got) != string(want) {
		t.Errorf("native with details:\n got %s\nwant %s", got, want)
	}

	tests := []struct {
		backend  string
		addUsage bool
		want     map[string]any
	}{
		{`{"id":"cmpl-1","object":"chat.completion","created":5,"model":"llama","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3},"system_fingerprint":"fp","x_extra":[1,{"a":null}]}`, false,
			map[string]any{"id": "chat_01X", "object": "chat.completion", "created": 5.0, "model": "hermes", "choices": []any{},
				"usage": map[string]any{"prompt_tokens": 1.0, "completion_tokens": 2.0, "total_tokens": 3.0}, "system_fingerprint": "fp", "x_extra": []any{1.0, map[string]any{"a": nil}}}},
		{` {"model":"llama", "choices":[], "usage":null} `, true,
			map[string]any{"id": "chat_01X", "object": "chat.completion", "model": "hermes", "choices": []any{},
				"usage": map[string]any{"prompt_tokens": 28.0, "completion_tokens": 12.0, "total_tokens": 40.0}}},
	}
	for _, tt := range tests {
		out, err := CompatResponse([]byte(tt.backend), "chat_01X", "chat.completion", "hermes", tt.addUsage, u)
		if err != nil {
			t.Fatalf("CompatResponse(%s): %v", tt.backend, err)
		}
		var got map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("CompatResponse(%s) = %s: %v", tt.backend, out, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("CompatResponse(%s)\n got %v\nwant %v", tt.backend, got, tt.want)
		}
	}
	if _, err := CompatResponse([]byte(`{"choices":[]}x`), "chat_01X", "chat.completion", "hermes", false, u); err == nil {
		t.Error("CompatResponse of a broken answer: no error")
	}
}

// nativeResponse is the native answer (docs/api.md).
type nativeResponse struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint json.RawMessage `json:"system_fingerprint,omitempty"`
	ServiceTier       json.RawMessage `json:"service_tier,omitempty"`
	Choices           json.RawMessage `json:"choices"`
	Usage             Usage           `json:"usage"`
}
