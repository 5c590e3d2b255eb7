package gateway_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
)

// withSecondBackend gives hermes a second backend, b (priority 1), the
// simulator s; the first, a, is the env's own.
func withSecondBackend(t *testing.T, s *sim.Server) envOption {
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return func(c *envConfig) {
		c.models[0].Backends[0].Name = "a"
		c.models[0].Backends = append(c.models[0].Backends, models.Backend{Name: "b", URL: srv.URL + "/v1", Model: "backend-hermes-b", Priority: 1})
	}
}

func withBreaker(o models.BreakerOptions) envOption {
	return func(c *envConfig) {
		up := models.NewClient(o)
		c.Upstream, c.Backends = up, up
	}
}

// TestFailoverIsInvisible: the first backend fails before its first
// byte; the client gets the second's answer, and is charged its tokens,
// once.
func TestFailoverIsInvisible(t *testing.T) {
	b := sim.New(sim.Config{ReplyTokens: 4})
	e := newEnv(t, sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 503}}, withSecondBackend(t, b))
	for _, r := range []struct{ path, body string }{
		{"/v1/chat", hi + `}`},
		{"/v1/chat/stream", hi + `}`},
		{"/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"hi"}]}`},
	} {
		resp := e.post(t, r.path, keyAll, r.body)
		raw, _ := readAll(resp)
		if resp.StatusCode != 200 || !strings.Contains(raw, "Hello") || strings.Contains(raw, "error") {
			t.Errorf("%s: %d %s", r.path, resp.StatusCode, raw)
		}
	}
	if e.sim.Stats().Requests != 1 || b.Stats().Requests != 3 {
		// The 503 carried Retry-After: 1, so a was skipped after its first.
		t.Errorf("backend a saw %d, b saw %d", e.sim.Stats().Requests, b.Stats().Requests)
	}
	s := e.waitRecorded(t, keyAll, 3)
	st := b.Stats()
	if got := s.ByModel["hermes"]; got.Prompt != st.ReportedPrompt || got.Completion != st.ReportedTokens || got.Requests != 3 {
		t.Errorf("ledger %+v; backend b reported %d + %d", got, st.ReportedPrompt, st.ReportedTokens)
	}
	poll.Until(t, "the access log's backend", func() bool { return strings.Count(e.log.String(), `"backend":"b"`) == 3 })
}

// TestNoRetryAfterFirstByte: a backend that breaks off after two tokens
// ends the client's stream with an error event; the second backend sees
// nothing, and the two tokens are charged.
func TestNoRetryAfterFirstByte(t *testing.T) {
	b := sim.New(sim.Config{})
	e := newEnv(t, sim.Config{ReplyTokens: 9, Fault: sim.Fault{Kind: sim.Disconnect, After: 2}}, withSecondBackend(t, b))
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	events, _ := readEvents(t, resp.Body)
	deltas := 0
	var last map[string]any
	for _, ev := range events {
		if ev.m != nil {
			last = ev.m
			if d, _ := ev.m["delta"].(string); d != "" {
				deltas++
			}
		}
	}
	if deltas != 2 || last["error"] == nil || !events[len(events)-1].done {
		t.Errorf("%d tokens, last event %v", deltas, last)
	}
	if b.Stats().Requests != 0 {
		t.Errorf("the second backend saw %d requests after the first byte", b.Stats().Requests)
	}
	if s := e.waitRecorded(t, keyAll, 1); s.ByModel["hermes"].Completion != 2 {
		t.Errorf("ledger %+v", s)
	}
}

// TestTimeoutsPerModel: the same slow backend is too slow for hermes's
// first-token timeout and within charon's.
func TestTimeoutsPerModel(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2, FirstTokenDelay: 300 * time.Millisecond}, func(c *envConfig) {
		c.models[0].Timeouts.FirstToken = 50 * time.Millisecond
		c.models[1].Timeouts.FirstToken = 5 * time.Second
	})
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	if resp.StatusCode != 504 || readError(t, resp).Error.Code != "upstream_timeout" {
		t.Errorf("hermes: %d", resp.StatusCode)
	}
	resp = e.post(t, "/v1/chat/stream", keyAll, `{"model":"charon","messages":[{"role":"user","content":"hi"}]}`)
	if raw, _ := readAll(resp); resp.StatusCode != 200 || !strings.HasSuffix(raw, "data: [DONE]\n\n") {
		t.Errorf("charon: %d %s", resp.StatusCode, raw)
	}
}

// TestBreakerAnswers: a failing backend answers 502 until its breaker
// opens; then 503 with Retry-After, without calling it. The admin API
// shows the breaker and closes it.
func TestBreakerAnswers(t *testing.T) {
	e := newEnv(t, sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}},
		withBreaker(models.BreakerOptions{Failures: 2, Cooldown: time.Minute}), withAdmin(t))
	for i := 0; i < 2; i++ {
		resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
		if ae := readError(t, resp); resp.StatusCode != 502 || ae.Error.Code != "upstream_error" || strings.Contains(ae.Error.Message, "127.0.0.1") {
			t.Errorf("failure %d: %d %+v", i, resp.StatusCode, ae)
		}
	}
	resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
	if ae := readError(t, resp); resp.StatusCode != 503 || ae.Error.Code != "overloaded" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("open breaker: %d %+v %v", resp.StatusCode, ae, resp.Header)
	}
	if n := e.sim.Stats().Requests; n != 2 {
		t.Errorf("the open backend was called: %d requests", n)
	}
	_, b := e.do(t, "GET", "/v1/admin/backends", adminToken, "")
	var list struct {
		Data []models.BackendStatus `json:"data"`
	}
	json.Unmarshal(b, &list)
	open := 0
	for _, s := range list.Data {
		if s.Model == "hermes" && s.State == models.StateOpen && s.RetryAt != nil && s.ConsecutiveFailures == 2 {
			open++
		}
	}
	if open != 1 {
		t.Errorf("backends: %s", b)
	}
	name := list.Data[0].Name
	for _, s := range list.Data {
		if s.Model == "hermes" {
			name = s.Model + "/" + s.Name
		}
	}
	if resp, b := e.do(t, "POST", "/v1/admin/backends/"+name+"/reset", adminToken, ""); resp.StatusCode != 200 || !strings.Contains(string(b), `"state":"closed"`) {
		t.Errorf("reset %s: %d %s", name, resp.StatusCode, b)
	}
	if resp, _ := e.do(t, "POST", "/v1/admin/backends/nope/reset", adminToken, ""); resp.StatusCode != 404 {
		t.Errorf("reset of an unknown backend: %d", resp.StatusCode)
	}
	e.sim.SetConfig(sim.Config{ReplyTokens: 2})
	if resp := e.post(t, "/v1/chat", keyAll, hi+`}`); resp.StatusCode != 200 {
		t.Errorf("after the reset: %d", resp.StatusCode)
	}
	resp, b = e.do(t, "GET", "/v1/admin/backends", adminToken, "")
	if !strings.Contains(string(b), `"state":"closed"`) {
		t.Errorf("backends after the reset: %d %s", resp.StatusCode, b)
	}
}

func readAll(resp *http.Response) (string, error) {
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
