package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/obol/obol/models"
)

func TestDecodeChatEstimate(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		prompt    int
		maxTokens int
	}{
		{"string content", `{"model":"m","messages":[{"role":"user","content":"abcdefgh"}]}`, 2, 0},
		{"rounded up", `{"model":"m","messages":[{"role":"user","content":"abcdefghi"}]}`, 3, 0},
		{"runes, not bytes", `{"model":"m","messages":[{"role":"user","content":"ééééé"}]}`, 2, 0},
		{"parts and an image", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"abcd"},{"type":"image_url","image_url":{"url":"x"}}]}]}`, 1 + imageTokens, 0},
		{"several messages", `{"model":"m","messages":[{"role":"system","content":"abcd"},{"role":"user","content":"efgh"}]}`, 2, 0},
		{"assistant tool call", `{"model":"m","messages":[{"role":"assistant","content":null,"tool_calls":[]},{"role":"tool","content":"42","tool_call_id":"a"}]}`, 1, 0},
		{"max_tokens", `{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"x"}]}`, 1, 50},
		{"max_completion_tokens wins", `{"model":"m","max_completion_tokens":70,"max_tokens":50,"messages":[{"role":"user","content":"x"}]}`, 1, 70},
		{"nulls are absent", `{"model":"m","max_tokens":null,"temperature":null,"stream":null,"messages":[{"role":"user","content":"x"}]}`, 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeChat([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if c.PromptTokens != tt.prompt || c.MaxTokens != tt.maxTokens {
				t.Errorf("prompt %d max %d, want %d %d", c.PromptTokens, c.MaxTokens, tt.prompt, tt.maxTokens)
			}
		})
	}
}

func TestContextWindow(t *testing.T) {
	m := &models.Model{Name: "m", ContextWindow: 100}
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"model":"m","max_tokens":99,"messages":[{"role":"user","content":"abcd"}]}`, true},
		{`{"model":"m","max_tokens":100,"messages":[{"role":"user","content":"abcd"}]}`, false},
		{`{"model":"m","messages":[{"role":"user","content":"abcd"}]}`, true},
	}
	for _, tt := range tests {
		c, err := decodeChat([]byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		err = c.check(m)
		var e *Error
		if tt.ok != (err == nil) || (err != nil && (!errors.As(err, &e) || e.Code != "context_length_exceeded")) {
			t.Errorf("%s: err = %v", tt.body, err)
		}
	}
}

func TestUpstreamBody(t *testing.T) {
	c, err := decodeChat([]byte(`{"model":"pub","messages":[{"role":"user","content":"x"}],"stream":false,"stream_options":{"include_usage":false,"extra":1},"seed":3}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(c.upstreamBody(true), &got)
	so, _ := got["stream_options"].(map[string]any)
	if _, has := got["model"]; has || got["stream"] != true || so["include_usage"] != true || so["extra"] != float64(1) || got["seed"] != float64(3) {
		t.Errorf("stream body %v", got)
	}
	got = nil
	json.Unmarshal(c.upstreamBody(false), &got)
	if _, has := got["stream_options"]; has || got["stream"] != false {
		t.Errorf("non-stream body %v", got)
	}
}

// FuzzDecodeChat: no input makes the decoder panic; it either accepts a
// request with a model and messages or answers a 400 *Error.
func FuzzDecodeChat(f *testing.F) {
	for _, seed := range []string{
		`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"charon","messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{"url":"data:,"}}]}],"max_tokens":5,"temperature":1,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"m","messages":[{"role":"assistant","content":null}],"n":2,"top_p":0.5}`,
		`{"model":1}`, `[]`, `null`, `{"messages":{}}`, `{"model":"m","messages":[{"role":"user","content":[1]}]}`,
		`{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":1e100}`, "\x00", `{"model":"m","stream_options":""}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := decodeChat(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Status() != 400 || e.Code != "bad_request" {
				t.Fatalf("error %v is not a 400 bad_request", err)
			}
			return
		}
		if c.Model == "" || c.PromptTokens < 0 || c.MaxTokens < 0 {
			t.Fatalf("accepted %q as %+v", body, c)
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(c.upstreamBody(c.Stream), &m) != nil {
			t.Fatal("upstream body is not a JSON object")
		}
		c.check(&models.Model{Name: "m", ContextWindow: 1000, Vision: false})
	})
}

// FuzzSplittersAgree: the one-pass object, array and message splitters
// read what encoding/json reads, and fail where it fails.
func FuzzSplittersAgree(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, `{"a":1,"a":2}`, `{"\u0061":1}`,
		"{\"\xff\":1}", `{"role":"user","ROLE":"tool"}`, `{"role":null,"content":[1]}`, `{"Content":"x","role":"user"}`,
		`{"role":5}`, `{"role":"us\u0065r"}`, `[1, {"a":[]} ,"x"]`, `[]`, ` [ ] `, `[1,]`, `{}`, `null`, `{"a":1}x`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal(data, &want)
		got, err := objectFields(data)
		if (err == nil) != (wantErr == nil) || !sameRaw(got, want) {
			t.Fatalf("objectFields(%q) = %q, %v; encoding/json: %q, %v", data, got, err, want, wantErr)
		}
		var wantA []json.RawMessage
		wantAErr := json.Unmarshal(data, &wantA)
		gotA, ok := arrayElements(data)
		if ok != (wantAErr == nil) || len(gotA) != len(wantA) {
			t.Fatalf("arrayElements(%q) = %q, %v; encoding/json: %q, %v", data, gotA, ok, wantA, wantAErr)
		}
		for i := range gotA {
			if !sameRaw(map[string]json.RawMessage{"": gotA[i]}, map[string]json.RawMessage{"": wantA[i]}) {
				t.Fatalf("element %d: %q, encoding/json %q", i, gotA[i], wantA[i])
			}
		}
		var wantM message
		wantMOK := len(data) > 0 && data[0] == '{' && json.Unmarshal(data, &wantM) == nil
		gotM, ok := decodeMessage(data)
		if ok != wantMOK || (gotM.Role == nil) != (wantM.Role == nil) ||
			gotM.Role != nil && *gotM.Role != *wantM.Role || !bytes.Equal(compactJSON(gotM.Content), compactJSON(wantM.Content)) {
			t.Fatalf("decodeMessage(%q) = %+v, %v; encoding/json: %+v, %v", data, gotM, ok, wantM, wantMOK)
		}
	})
}

// sameRaw reports whether two member maps hold the same values, up to
// insignificant whitespace.
func sameRaw(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(compactJSON(v), compactJSON(w)) {
			return false
		}
	}
	return true
}

func compactJSON(raw []byte) []byte {
	var out bytes.Buffer
	if json.Compact(&out, raw) != nil {
		return raw
	}
	return out.Bytes()
}

func BenchmarkDecodeChat(b *testing.B) {
	body := []byte(`{"model":"hermes","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Summarise the plot of Hamlet in two sentences, please."}],"temperature":0.7,"max_tokens":200,"stream":true,"stream_options":{"include_usage":true}}`)
	b.ReportAllocs()
	for b.Loop() {
		c, err := decodeChat(body)
		if err != nil {
			b.Fatal(err)
		}
		c.upstreamBody(true)
	}
}
