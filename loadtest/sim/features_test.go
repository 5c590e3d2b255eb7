package sim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/obol/obol/loadtest/sim"
)

func postTo(t *testing.T, url, path, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestChoicesInterleaved: n choices stream token by token in turn, and
// usage counts every choice.
func TestChoicesInterleaved(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 2, CachedTokens: 2, ReasoningTokens: 1, Fingerprint: "fp_sim", ServiceTier: "default"}))
	defer srv.Close()
	lines := dataLines(t, post(t, srv.URL, `{"model":"m","n":2,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"a b c"}]}`).Body)
	var idx []float64
	for _, l := range lines[:len(lines)-2] {
		var ch struct {
			Choices []struct{ Index float64 } `json:"choices"`
			Fp      string                    `json:"system_fingerprint"`
		}
		json.Unmarshal([]byte(l), &ch)
		if ch.Fp != "fp_sim" {
			t.Errorf("chunk without the fingerprint: %s", l)
		}
		idx = append(idx, ch.Choices[0].Index)
	}
	// role 0, role 1, token 0 of 0 and 1, token 1 of 0 and 1, finish 0, finish 1
	if want := []float64{0, 1, 0, 1, 0, 1, 0, 1}; len(idx) != len(want) {
		t.Fatalf("choice order %v", idx)
	}
	if u := lines[len(lines)-2]; !strings.Contains(u, `"completion_tokens":4`) || !strings.Contains(u, `"cached_tokens":2`) || !strings.Contains(u, `"reasoning_tokens":1`) {
		t.Errorf("usage chunk %s", u)
	}
}

// TestToolCallPieces: with tools offered, the answer is a call of the
// first tool whose arguments arrive in pieces that join whole.
func TestToolCallPieces(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{}))
	defer srv.Close()
	tools := `"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`
	lines := dataLines(t, post(t, srv.URL, `{"model":"m","stream":true,`+tools+`,"messages":[{"role":"user","content":"weather?"}]}`).Body)
	args, name, finish := "", "", ""
	for _, l := range lines[:len(lines)-1] {
		var ch struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						Function struct{ Name, Arguments string } `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		json.Unmarshal([]byte(l), &ch)
		for _, tc := range ch.Choices[0].Delta.ToolCalls {
			name += tc.Function.Name
			args += tc.Function.Arguments
		}
		if f := ch.Choices[0].FinishReason; f != nil {
			finish = *f
		}
	}
	if name != "get_weather" || args != sim.ToolArguments || finish != "tool_calls" {
		t.Errorf("tool call %q(%q), finish %q", name, args, finish)
	}
	// After the tool's result, a text answer.
	resp := post(t, srv.URL, `{"model":"m",`+tools+`,"messages":[{"role":"user","content":"w"},{"role":"tool","tool_call_id":"c","content":"sunny"}]}`)
	var out struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	json.NewDecoder(resp.Body).Decode(&out)
	if out.Choices[0].Message.Content != sim.Reply(sim.DefaultReplyTokens) {
		t.Errorf("after the tool: %+v", out)
	}
}

func TestEmbeddingsAndCompletions(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 3}))
	defer srv.Close()
	var emb struct {
		Data []struct {
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Usage struct{ PromptTokens int } `json:"usage"`
	}
	json.NewDecoder(postTo(t, srv.URL, "/v1/embeddings", `{"model":"e","input":["a b","c"],"encoding_format":"base64"}`).Body).Decode(&emb)
	if len(emb.Data) != 2 || emb.Data[0].Embedding[0] != '"' {
		t.Errorf("embeddings %+v", emb)
	}
	lines := dataLines(t, postTo(t, srv.URL, "/v1/completions", `{"model":"m","prompt":"say","stream":true,"stream_options":{"include_usage":true}}`).Body)
	if len(lines) != 6 || !strings.Contains(lines[0], `"object":"text_completion"`) || !strings.Contains(lines[0], `"text":"Hello"`) || !strings.Contains(lines[4], `"completion_tokens":3`) {
		t.Errorf("completion stream %q", lines)
	}
}
