package sim_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/obol/obol/loadtest/sim"
)

func post(t *testing.T, url, body string) *http.Response {
	t.Helper()
	resp, err := http.Post(url+"/v1/chat/completions", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func dataLines(t *testing.T, r io.Reader) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, s)
		}
	}
	return out
}

// TestStreamQuirks: the simulator speaks as vLLM and OpenAI do.
func TestStreamQuirks(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 3}))
	defer srv.Close()

	lines := dataLines(t, post(t, srv.URL, `{"model":"m","stream":true,"messages":[{"role":"user","content":"a b c"}]}`).Body)
	// role-only chunk, 3 tokens, finish chunk, [DONE]; no usage unasked
	if len(lines) != 6 || lines[5] != "[DONE]" {
		t.Fatalf("lines %q", lines)
	}
	if !strings.Contains(lines[0], `"delta":{"role":"assistant","content":""}`) {
		t.Errorf("first chunk %s", lines[0])
	}
	if !strings.Contains(lines[4], `"finish_reason":"stop"`) {
		t.Errorf("finish chunk %s", lines[4])
	}
	for _, l := range lines {
		if strings.Contains(l, "usage") {
			t.Errorf("usage unasked: %s", l)
		}
	}

	lines = dataLines(t, post(t, srv.URL, `{"model":"m","stream":true,"stream_options":{"include_usage":true},"max_tokens":2,"messages":[{"role":"user","content":"a b c"}]}`).Body)
	var last struct {
		Choices []any     `json:"choices"`
		Usage   sim.Usage `json:"usage"`
	}
	json.Unmarshal([]byte(lines[len(lines)-2]), &last)
	if len(last.Choices) != 0 || last.Usage != (sim.Usage{PromptTokens: 6, CompletionTokens: 2, TotalTokens: 8}) {
		t.Errorf("usage chunk %s", lines[len(lines)-2])
	}
	if !strings.Contains(lines[len(lines)-3], `"finish_reason":"length"`) || !strings.Contains(lines[0], `"usage":null`) {
		t.Errorf("with include_usage: %q", lines)
	}

	// vLLM's continuous_usage_stats: the usage so far in every chunk.
	lines = dataLines(t, post(t, srv.URL, `{"model":"m","stream":true,"stream_options":{"include_usage":true,"continuous_usage_stats":true},"messages":[{"role":"user","content":"a b c"}]}`).Body)
	for i, want := range []int{0, 1, 2, 3, 3, 3} { // role, 3 tokens, finish, the usage chunk
		var ch struct{ Usage sim.Usage }
		json.Unmarshal([]byte(lines[i]), &ch)
		if ch.Usage != (sim.Usage{PromptTokens: 6, CompletionTokens: want, TotalTokens: 6 + want}) {
			t.Errorf("chunk %d: %s, want %d completion tokens", i, lines[i], want)
		}
	}
}

func TestFaults(t *testing.T) {
	s := sim.New(sim.Config{ReplyTokens: 5})
	srv := httptest.NewServer(s)
	defer srv.Close()
	body := `{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}`

	s.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 503}})
	if resp := post(t, srv.URL, body); resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Errorf("status fault: %d", resp.StatusCode)
	}

	s.SetConfig(sim.Config{ReplyTokens: 5, Fault: sim.Fault{Kind: sim.StreamError, After: 2}})
	lines := dataLines(t, post(t, srv.URL, body).Body)
	if len(lines) != 5 || !strings.HasPrefix(lines[3], `{"error":`) || lines[4] != "[DONE]" {
		t.Errorf("stream error: %q", lines)
	}

	s.SetConfig(sim.Config{ReplyTokens: 5, Fault: sim.Fault{Kind: sim.Disconnect, After: 1}})
	_, err := io.ReadAll(post(t, srv.URL, body).Body)
	if err == nil {
		t.Error("disconnect fault: the body ended cleanly")
	}
	if st := s.Stats(); st.Requests != 3 || st.Completed != 0 {
		t.Errorf("stats %+v", st)
	}
}

func TestBadRequests(t *testing.T) {
	srv := httptest.NewServer(sim.New(sim.Config{APIKey: "k"}))
	defer srv.Close()
	if resp := post(t, srv.URL, `{}`); resp.StatusCode != 401 {
		t.Errorf("no key: %d", resp.StatusCode)
	}
	srv2 := httptest.NewServer(sim.New(sim.Config{}))
	defer srv2.Close()
	if resp := post(t, srv2.URL, `{"model":"m","messages":[]}`); resp.StatusCode != 400 {
		t.Errorf("empty messages: %d", resp.StatusCode)
	}
}
