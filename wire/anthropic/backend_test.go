package anthropic

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/obol/obol/internal/apierr"
)

// TestMembers: a member is replaced or dropped wherever it stands, and
// every other member is kept byte for byte (escapes, spacing inside it,
// order); only whitespace between members may go.
func TestMembers(t *testing.T) {
	for _, tt := range []struct {
		in   string
		set  map[string][]byte
		want string
	}{
		{`{"model":"a","x":"\u003c1\u003e"}`, map[string][]byte{"model": nil}, `{"x":"\u003c1\u003e"}`},
		{`{ "x" : 1 , "model" : "a" , "y" : [1, 2] }`, map[string][]byte{"model": nil}, `{"x" : 1, "y" : [1, 2]}`},
		{`{"x":1,"model":"a"}`, map[string][]byte{"model": nil}, `{"x":1}`},
		{`{"model":"a"}`, map[string][]byte{"model": nil}, `{}`},
		{`{"id":"msg_1","model":"claude","n":{"model":"kept"}}`, map[string][]byte{"id": []byte(`"msg_2"`), "model": []byte(`"hermes"`)},
			`{"id":"msg_2","model":"hermes","n":{"model":"kept"}}`},
		{`{"max_tokens":32000,"thinking":{"type":"enabled"}}`, map[string][]byte{"max_tokens": []byte("100"), "model": nil},
			`{"max_tokens":100,"thinking":{"type":"enabled"}}`},
	} {
		got, err := members([]byte(tt.in), tt.set)
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: %s, %v; want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := members([]byte(`[1]`), nil); err == nil {
		t.Error("an array was taken for an object")
	}
}

// FuzzFromChat: whatever the chat body, FromChat answers a 400 naming the
// fault or a Messages request with max_tokens and messages; it never
// panics.
func FuzzFromChat(f *testing.F) {
	f.Add([]byte(`{"messages":[{"role":"system","content":"s"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]},` +
		`{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"ok"}],` +
		`"max_tokens":10,"stop":"x","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"required","parallel_tool_calls":false}`))
	f.Add([]byte(`{"messages":[{"role":"user","content":"hi"}],"max_completion_tokens":5,"n":2}`))
	f.Add([]byte(`{"messages":[],"max_tokens":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := FromChat(body)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Status() != 400 {
				t.Fatalf("%q: %v", body, err)
			}
			return
		}
		var req struct {
			MaxTokens int               `json:"max_tokens"`
			Messages  []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(out, &req); err != nil || req.MaxTokens <= 0 || len(req.Messages) == 0 {
			t.Fatalf("%q: %s, %v", body, out, err)
		}
	})
}

// TestPassBodyThinking: a cap lowered below thinking's budget lowers the
// budget under it, or leaves thinking out when there is no room for the
// least budget; adaptive thinking passes as it is.
func TestPassBodyThinking(t *testing.T) {
	body := []byte(`{"model":"m","max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":16000},"messages":[]}`)
	for _, tt := range []struct {
		max  int
		want string
	}{
		{32000, `{"max_tokens":32000,"thinking":{"type":"enabled","budget_tokens":16000},"messages":[]}`},
		{8000, `{"max_tokens":8000,"thinking":{"type":"enabled","budget_tokens":7999},"messages":[]}`},
		{900, `{"max_tokens":900,"messages":[]}`},
	} {
		got, err := PassBody(body, tt.max)
		if err != nil || string(got) != tt.want {
			t.Errorf("max %d: %s %v, want %s", tt.max, got, err, tt.want)
		}
	}
	adaptive := []byte(`{"model":"m","max_tokens":32000,"thinking":{"type":"adaptive"}}`)
	if got, _ := PassBody(adaptive, 100); string(got) != `{"max_tokens":100,"thinking":{"type":"adaptive"}}` {
		t.Errorf("adaptive: %s", got)
	}
}
