package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
)

// TestReplicasShareLimits: three gateway processes on one Redis together
// admit exactly a key's RPM, and a project's across its two keys, as one
// would. RPM 6 refills one request every 10 s and RPM 20 one every 3 s,
// longer than a burst takes, so the counts are exact.
func TestReplicasShareLimits(t *testing.T) {
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	s := sim.New(sim.Config{ReplyTokens: 2})
	up := httptest.NewServer(s)
	defer up.Close()
	var bases []string
	for i := 0; i < 3; i++ {
		_, base, _ := startObolWith(t, "testdata/replicas.yaml", "TEST_UPSTREAM="+up.URL+"/v1",
			"TEST_DATA_DIR="+t.TempDir(), "TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL)
		bases = append(bases, base)
	}
	if codes := burst(t, bases, "sk-demo-free-4f1c9a"); codes[200] != 6 || codes[429] != 54 {
		t.Errorf("a key of RPM 6: answers %v, want exactly 6 × 200 and 54 × 429", codes)
	}
	if codes := burst(t, bases, "sk-demo-pro-7b2e51", "sk-demo-team-c03d88"); codes[200] != 20 || codes[429] != 40 {
		t.Errorf("a project of RPM 20 over two keys: answers %v, want exactly 20 × 200 and 40 × 429", codes)
	}
	if got := s.Stats().Requests; got != 26 {
		t.Errorf("the backend saw %d requests, want 26", got)
	}
}

// burst sends 60 concurrent requests, spread over the replicas and the
// secrets, and counts the answers by status.
func burst(t *testing.T, bases []string, secrets ...string) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", bases[i%len(bases)]+"/v1/chat", strings.NewReader(`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
			req.Header.Set("Authorization", "Bearer "+secrets[i%len(secrets)])
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return codes
}

// TestReplicasShareLedger: three gateway processes on one Redis and one
// PostgreSQL write one ledger, from OpenAI's routes and Anthropic's;
// every replica serves the same month, and it holds exactly the tokens
// the backend reported.
func TestReplicasShareLedger(t *testing.T) {
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	s := sim.New(sim.Config{ReplyTokens: 7})
	up := httptest.NewServer(s)
	defer up.Close()
	var bases []string
	for i := 0; i < 3; i++ {
		_, base, _ := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1",
			"TEST_DATA_DIR="+t.TempDir(), "TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL)
		bases = append(bases, base)
	}
	bodies := []struct{ path, body string }{
		{"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"a b c"}],"max_tokens":5}`},
		{"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"a b"}]}`},
		{"/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"a"}],"max_tokens":3}`},
		{"/v1/messages", `{"model":"hermes","max_tokens":4,"system":"be brief","messages":[{"role":"user","content":"a b c d"}]}`},
		{"/anthropic/v1/messages?beta=true", `{"model":"hermes","max_tokens":6,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"a"}]}]}`},
	}
	var wg sync.WaitGroup
	for i := 0; i < 90; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bodies[i%len(bodies)]
			resp, err := http.DefaultClient.Do(authed("POST", bases[i%3]+b.path, b.body))
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Errorf("%s: %d", b.path, resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	for _, base := range bases {
		got := hermes(waitUsage(t, base, 90))
		if got.Prompt != st.ReportedPrompt || got.Completion != st.ReportedTokens {
			t.Errorf("%s: ledger %+v, backend reported %d + %d", base, got, st.ReportedPrompt, st.ReportedTokens)
		}
	}
}
