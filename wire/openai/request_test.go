package openai

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
)

// TestPromptMeasure: the prompt's bound is the raw length of what the
// model reads (every message but its image parts, the tools, the
// response format, members obol does not know) plus the template's
// tokens and each image's; the estimate counts the same bytes, four
// ASCII bytes or one other character a token.
func TestPromptMeasure(t *testing.T) {
	m := &models.Model{Name: "m", ContextWindow: 1 << 20, Vision: true, ImageTokens: 1000}
	msg := func(content string) string { return `{"role":"user","content":` + content + `}` }
	tools := `[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]`
	call := `{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"q\":\"` + strings.Repeat("x", 400) + `\"}"}}]}`
	tests := []struct {
		name          string
		body          string
		read          []string // what the model reads, raw
		wide, images  int      // its non-ASCII characters, its images
		messages      int
		estimateDelta int // beyond the estimate of read
	}{
		{"a string", `{"model":"m","messages":[` + msg(`"abcdefgh"`) + `]}`, []string{msg(`"abcdefgh"`)}, 0, 0, 1, 0},
		{"markup", `{"model":"m","messages":[` + msg(`"<b>a, b: c</b>"`) + `]}`, []string{msg(`"<b>a, b: c</b>"`)}, 0, 0, 1, 0},
		{"CJK", `{"model":"m","messages":[` + msg(`"日本語のテキスト"`) + `]}`, []string{msg(`"日本語のテキスト"`)}, 8, 0, 1, 0},
		{"emoji", `{"model":"m","messages":[` + msg(`"🙂🙂"`) + `]}`, []string{msg(`"🙂🙂"`)}, 2, 0, 1, 0},
		{"sampling members are not read", `{"model":"m","max_tokens":5,"temperature":1,"n":1,"stream":false,"seed":3,"messages":[` + msg(`"a"`) + `]}`,
			[]string{msg(`"a"`)}, 0, 0, 1, 0},
		{"tools, tool_choice, response_format", `{"model":"m","tools":` + tools + `,"tool_choice":"auto","response_format":{"type":"json_object"},"messages":[` + msg(`"a"`) + `]}`,
			[]string{msg(`"a"`), tools, `"auto"`, `{"type":"json_object"}`}, 0, 0, 1, 0},
		{"tool calls and results", `{"model":"m","messages":[` + msg(`"a"`) + `,` + call + `,{"role":"tool","tool_call_id":"c1","content":"42"}]}`,
			[]string{msg(`"a"`), call, `{"role":"tool","tool_call_id":"c1","content":"42"}`}, 0, 0, 3, 0},
		{"an unknown member", `{"model":"m","chat_template_kwargs":{"x":"yyyy"},"messages":[` + msg(`"a"`) + `]}`,
			[]string{msg(`"a"`), `{"x":"yyyy"}`}, 0, 0, 1, 0},
		{"an image part counts as an image", `{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"ab"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`,
			[]string{`{"role":"user","content":[{"type":"text","text":"ab"},]}`}, 0, 1, 1, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := DecodeChat([]byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Check(m); err != nil {
				t.Fatal(err)
			}
			bytes := 0
			for _, r := range tt.read {
				bytes += len(r) + strings.Count(r, ",") + strings.Count(r, ":") + 5*(strings.Count(r, "<")+strings.Count(r, ">")+strings.Count(r, "&"))
			}
			bound := bytes + tt.images*1000 + templatePerRequest + templatePerMessage*tt.messages
			ascii := countASCII(strings.Join(tt.read, ""))
			estimate := (ascii+3)/4 + tt.wide + tt.estimateDelta
			if c.PromptBound != bound || c.PromptTokens != estimate {
				t.Errorf("bound %d, estimate %d; want %d, %d", c.PromptBound, c.PromptTokens, bound, estimate)
			}
		})
	}
}

func countASCII(s string) (n int) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x80 {
			n++
		}
	}
	return n
}

// TestOutputCap: the output cap is the larger of max_tokens and
// max_completion_tokens.
func TestOutputCap(t *testing.T) {
	for body, want := range map[string]int{
		`{"model":"m","max_tokens":50,"messages":[{"role":"user","content":"x"}]}`:                                    50,
		`{"model":"m","max_completion_tokens":70,"max_tokens":50,"messages":[{"role":"user","content":"x"}]}`:         70,
		`{"model":"m","max_tokens":null,"temperature":null,"stream":null,"messages":[{"role":"user","content":"x"}]}`: 0,
	} {
		c, err := DecodeChat([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if c.MaxTokens != want {
			t.Errorf("%s: max %d, want %d", body, c.MaxTokens, want)
		}
	}
}

func TestContextWindow(t *testing.T) {
	m := &models.Model{Name: "m", ContextWindow: 100}
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"model":"m","max_tokens":92,"messages":[{"role":"user","content":"abcd"}]}`, true}, // 8 + 92
		{`{"model":"m","max_tokens":93,"messages":[{"role":"user","content":"abcd"}]}`, false},
		{`{"model":"m","messages":[{"role":"user","content":"abcd"}]}`, true},
	}
	for _, tt := range tests {
		c, err := DecodeChat([]byte(tt.body))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Check(m)
		var e *apierr.Error
		if tt.ok != (err == nil) || (err != nil && (!errors.As(err, &e) || e.Code != "context_length_exceeded")) {
			t.Errorf("%s: err = %v", tt.body, err)
		}
	}
}

func TestUpstreamBody(t *testing.T) {
	c, err := DecodeChat([]byte(`{"model":"pub","messages":[{"role":"user","content":"x"}],"stream":false,"stream_options":{"include_usage":false,"extra":1},"seed":3}`))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.Unmarshal(c.UpstreamBody(true), &got)
	so, _ := got["stream_options"].(map[string]any)
	if _, has := got["model"]; has || got["stream"] != true || so["include_usage"] != true || so["extra"] != float64(1) || got["seed"] != float64(3) {
		t.Errorf("stream body %v", got)
	}
	got = nil
	json.Unmarshal(c.UpstreamBody(false), &got)
	if _, has := got["stream_options"]; has || got["stream"] != false {
		t.Errorf("non-stream body %v", got)
	}
}

// FuzzDecodeChat: no input makes the decoder panic; it either accepts a
// request with a model and messages or answers a 400 *apierr.Error.
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
		c, err := DecodeChat(body)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Status() != 400 || e.Code != "bad_request" {
				t.Fatalf("error %v is not a 400 bad_request", err)
			}
			return
		}
		if c.Model == "" || c.PromptTokens < 0 || c.MaxTokens < 0 {
			t.Fatalf("accepted %q as %+v", body, c)
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(c.UpstreamBody(c.Stream), &m) != nil {
			t.Fatal("upstream body is not a JSON object")
		}
		c.Check(&models.Model{Name: "m", ContextWindow: 1000, Vision: false})
	})
}

// FuzzSplittersAgree: the one-pass object, array and message splitters
// read what encoding/json reads, and fail where it fails.
func FuzzSplittersAgree(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"hi"}]}`, `{"a":1,"a":2}`, `{"\u0061":1}`,
		"{\"\xff\":1}", `{"role":"user","ROLE":"tool"}`, `{"role":null,"content":[1]}`, `{"Content":"x","role":"user"}`,
		`{"role":5}`, `{"role":0`, `{"role":"us\u0065r"}`, `[1, {"a":[]} ,"x"]`, `[]`, ` [ ] `, `[1,]`, `{}`, `null`, `{"a":1}x`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal(data, &want)
		got, err := jsonobj.Members(data)
		if (err == nil) != (wantErr == nil) || !sameRaw(got, want) {
			t.Fatalf("jsonobj.Members(%q) = %q, %v; encoding/json: %q, %v", data, got, err, want, wantErr)
		}
		var wantA []json.RawMessage
		wantAErr := json.Unmarshal(data, &wantA)
		gotA, ok := jsonobj.Elements(data)
		if ok != (wantAErr == nil) || len(gotA) != len(wantA) {
			t.Fatalf("jsonobj.Elements(%q) = %q, %v; encoding/json: %q, %v", data, gotA, ok, wantA, wantAErr)
		}
		for i := range gotA {
			if !sameRaw(map[string]json.RawMessage{"": gotA[i]}, map[string]json.RawMessage{"": wantA[i]}) {
				t.Fatalf("element %d: %q, encoding/json %q", i, gotA[i], wantA[i])
			}
		}
		var wantM message
		wantMOK := len(data) > 0 && data[0] == '{' && json.Unmarshal(data, &wantM) == nil
		gotM, err := decodeMessage(0, data)
		if err != nil && (!wantMOK || foldsToMessageField(data)) {
			return // refused, as encoding/json refuses it or for a name that folds to role or content
		}
		if (err == nil) != wantMOK || (gotM.Role == nil) != (wantM.Role == nil) ||
			gotM.Role != nil && *gotM.Role != *wantM.Role || !bytes.Equal(compactJSON(gotM.Content), compactJSON(wantM.Content)) {
			t.Fatalf("decodeMessage(%q) = %+v, %v; encoding/json: %+v, %v", data, gotM, err, wantM, wantMOK)
		}
	})
}

// foldsToMessageField reports whether an object has a member whose name
// folds to a message field without being it.
func foldsToMessageField(data []byte) bool {
	var m map[string]json.RawMessage
	json.Unmarshal(data, &m)
	for n := range m {
		if messageFields.Check("", n) != nil {
			return true
		}
	}
	return false
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
		c, err := DecodeChat(body)
		if err != nil {
			b.Fatal(err)
		}
		c.UpstreamBody(true)
	}
}

// TestFoldedNames: a member whose name is not a field but folds to one
// (as encoding/json, and so a Go backend, reads it) is refused with a
// 400 naming it, at the top of the body, in a message, in a content part
// and in stream_options; an escaped name that decodes to the field
// exactly is the field, and a name that folds to none passes through.
func TestFoldedNames(t *testing.T) {
	const msgs = `"messages":[{"role":"user","content":"hi"}]`
	for _, tt := range []struct{ body, param string }{
		{`{"model":"m","max_tokens":5,"max_tokenſ":30000,` + msgs + `}`, "max_tokenſ"},
		{`{"model":"m","meſſages":[{"role":"user","content":"` + strings.Repeat("x", 100) + `"}],` + msgs + `}`, "meſſages"},
		{`{"model":"m","ſtream":true,` + msgs + `}`, "ſtream"},
		{`{"model":"m","Max_Tokens":9,` + msgs + `}`, "Max_Tokens"},
		{`{"model":"m","max_to` + "\u212a" + `ens":9,` + msgs + `}`, "max_to\u212aens"},
		{`{"model":"m","TOOLS":[],` + msgs + `}`, "TOOLS"},
		{`{"model":"m","messages":[{"role":"user","content":"hi","Content":"` + strings.Repeat("x", 100) + `"}]}`, "messages[0].Content"},
		{`{"model":"m","messages":[{"role":"user","content":"hi","\u0043ontent":"x"}]}`, "messages[0].Content"},
		{`{"model":"m","messages":[{"rolE":"tool","role":"user","content":"hi"}]}`, "messages[0].rolE"},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"a","Text":"b"}]}]}`, "messages[0].content[0].Text"},
		{`{"model":"m","stream":true,"stream_options":{"include_uſage":false},` + msgs + `}`, "stream_options.include_uſage"},
	} {
		_, err := DecodeChat([]byte(tt.body))
		e := (*apierr.Error)(nil)
		if !errors.As(err, &e) || e.Code != apierr.CodeBadRequest || e.Param != tt.param || !strings.Contains(e.Message, tt.param) {
			t.Errorf("%s: %v, want a 400 naming %s", tt.body, err, tt.param)
		}
	}
	var e *apierr.Error
	c, err := DecodeChat([]byte(`{"model":"m","max\u005ftokens":7,"top_k":3,` + msgs + `}`))
	if err != nil || c.MaxTokens != 7 || string(c.fields["top_k"]) != "3" {
		t.Errorf("an escaped field and an unknown one: %+v, %v", c, err)
	}
	for _, body := range []string{`{"model":"m","inpuT":"hi"}`, `{"model":"m","input":"hi","max_output_tokenſ":9}`} {
		if _, _, err := TranslateResponses([]byte(body)); !errors.As(err, &e) || e.Code != apierr.CodeBadRequest {
			t.Errorf("responses %s: %v, want a 400", body, err)
		}
	}
	for _, body := range []string{`{"model":"m","prompt":"a","best_Of":3}`, `{"model":"m","Prompt":"a"}`} {
		if _, err := DecodeCompletion([]byte(body)); !errors.As(err, &e) || e.Code != apierr.CodeBadRequest {
			t.Errorf("completions %s: %v, want a 400", body, err)
		}
	}
	if _, err := DecodeEmbeddings([]byte(`{"model":"m","input":"a","İnput":"b"}`)); err != nil {
		t.Logf("embeddings: %v", err) // İ (U+0130) does not fold to i: passed through
	}
	if _, err := DecodeChat([]byte("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\"}]}")); !errors.As(err, &e) || e.Code != apierr.CodeBadRequest {
		t.Errorf("a body that is not UTF-8: %v, want a 400", err)
	}
}

// FuzzOneMeaningPerField: whatever body the decoder accepts, the body it
// sends a backend means the same to a decoder that matches names exactly
// (Python's, vLLM's) and to one that folds them (encoding/json's, a Go
// backend's): the output caps, n, stream, and each message's role and
// content.
func FuzzOneMeaningPerField(f *testing.F) {
	for _, seed := range []string{
		`{"model":"m","max_tokens":5,"max_tokenſ":30000,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","meſſages":[{"role":"user","content":"long"}],"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","ſtream":true,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"hi","Content":"long"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"hi","\u0063ontent":"long"}]}`,
		`{"model":"m","max\u005ftokens":7,"n":2,"N":3,"messages":[{"role":"user","content":"hi"}]}`,
		`{"model":"m","max_tokens":1,"max_tokens":2,"messages":[{"role":"user","content":"a"},{"ROLE":"x","role":"user","content":"b"}]}`,
	} {
		f.Add([]byte(seed))
	}
	type msg struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	}
	type fields struct {
		MaxTokens           *int64 `json:"max_tokens"`
		MaxCompletionTokens *int64 `json:"max_completion_tokens"`
		N                   *int64 `json:"n"`
		Stream              *bool  `json:"stream"`
		Messages            []msg  `json:"messages"`
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeChat(body)
		if err != nil {
			return
		}
		up := c.UpstreamBody(c.Stream)
		var folding fields
		if json.Unmarshal(up, &folding) != nil {
			t.Fatalf("upstream body %q does not decode", up)
		}
		exact := exactFields(t, up)
		for name, v := range map[string]any{"max_tokens": folding.MaxTokens, "max_completion_tokens": folding.MaxCompletionTokens, "n": folding.N, "stream": folding.Stream} {
			if got, want := fmt.Sprint(deref(v)), exactValue(exact[name]); got != want {
				t.Fatalf("%s: a folding decoder reads %s, an exact one %s, of %q", name, got, want, up)
			}
		}
		var exactMsgs []map[string]json.RawMessage
		json.Unmarshal(exact["messages"], &exactMsgs)
		if len(exactMsgs) != len(folding.Messages) {
			t.Fatalf("messages: %d and %d", len(folding.Messages), len(exactMsgs))
		}
		for i, m := range folding.Messages {
			var role string
			json.Unmarshal(exactMsgs[i]["role"], &role)
			if role != m.Role || !bytes.Equal(compactJSON(exactMsgs[i]["content"]), compactJSON(m.Content)) {
				t.Fatalf("message %d: %s %s folded, %s %s exact", i, m.Role, m.Content, role, exactMsgs[i]["content"])
			}
		}
	})
}

// exactFields reads an object's members by their exact names, the last
// of a name winning (as Python's json does).
func exactFields(t *testing.T, body []byte) map[string]json.RawMessage {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func exactValue(raw json.RawMessage) string {
	var v any
	if len(raw) == 0 || json.Unmarshal(raw, &v) != nil || v == nil {
		return "<nil>"
	}
	if f, ok := v.(float64); ok {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprint(v)
}

func deref(v any) any {
	switch p := v.(type) {
	case *int64:
		if p != nil {
			return *p
		}
	case *bool:
		if p != nil {
			return *p
		}
	}
	return nil
}

// FuzzBoundHoldsWorstCase: whatever chat body the decoder accepts, its
// prompt bound is at least what a backend billing a token per byte of what
// the model reads (the simulator's worst case) bills for the body the
// gateway sends, and the estimate is within the bound.
func FuzzBoundHoldsWorstCase(f *testing.F) {
	call := `{"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{\"a\":[1,2,3],\"b\":\"<x & y>\"}"}}]}`
	for _, seed := range []string{
		`{"model":"m","messages":[{"role":"user","content":"h"}]}`,
		`{"model":"m","messages":[{"role":"user","content":"日本語🙂"}],"max_tokens":3}`,
		`{"model":"m","messages":[{"role":"user","content":"a"},` + call + `,{"role":"tool","tool_call_id":"c","content":"{\"ok\":true}"}]}`,
		`{"model":"m","tools":[{"type":"function","function":{"name":"f","description":"<b>a, b: c</b>","parameters":{"type":"object","properties":{"x":{"type":"string"}}}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"messages":[{"role":"user","content":"a"}]}`,
		`{"model":"m","response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}},"messages":[{"role":"system","content":"x"},{"role":"user","name":"n","content":[{"type":"text","text":"a\u2028b"},{"type":"image_url","image_url":{"url":"data:,"}}]}]}`,
		`{"model":"m","documents":[{"text":"a,b:c"}],"messages":[{"role":"user","content":"\"\\\u00e9"}]}`,
	} {
		f.Add([]byte(seed))
	}
	m := &models.Model{Name: "m", ContextWindow: 1 << 30, Vision: true, ImageTokens: 85}
	f.Fuzz(func(t *testing.T, body []byte) {
		c, err := DecodeChat(body)
		if err != nil || c.Check(m) != nil {
			return
		}
		up := c.UpstreamBody(c.Stream)
		if worst := sim.WorstPrompt(up); c.PromptBound < worst || c.PromptTokens > c.PromptBound {
			t.Fatalf("bound %d, estimate %d; the worst case bills %d for %q", c.PromptBound, c.PromptTokens, worst, up)
		}
	})
}
