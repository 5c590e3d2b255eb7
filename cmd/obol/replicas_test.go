package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
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
	return burstOf(t, 60, bases, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`, secrets...)
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
			postOK(t, bases[i%3]+b.path, b.body)
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

// TestReplicasMixedBackends: three replicas in front of a model whose
// first backend speaks Anthropic's Messages API and whose second speaks
// OpenAI's, under load from every route, the Anthropic backend answering
// 529 overloaded_error for a while in the middle. Every request is
// served; every replica's ledger holds exactly what the two backends
// reported, and its cost is Anthropic's rules applied to the Anthropic
// backend's cache reads and writes by lifetime and OpenAI's to the
// other's cached tokens, to the picodollar.
func TestReplicasMixedBackends(t *testing.T) {
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	cache := sim.Config{ReplyTokens: 7, CachedTokens: 2, CacheWrite5m: 3, CacheWrite1h: 4, APIKey: "sk-ant-test"}
	a, o := sim.New(cache), sim.New(sim.Config{ReplyTokens: 7, CachedTokens: 2})
	upA, upO := httptest.NewServer(a), httptest.NewServer(o)
	defer upA.Close()
	defer upO.Close()
	var bases []string
	for i := 0; i < 3; i++ {
		_, base, _ := startObolWith(t, "testdata/mixed.yaml", "TEST_ANTHROPIC_UPSTREAM="+upA.URL+"/v1", "TEST_UPSTREAM="+upO.URL+"/v1",
			"TEST_ANTHROPIC_KEY=sk-ant-test", "TEST_DATA_DIR="+t.TempDir(), "TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL)
		bases = append(bases, base)
	}
	bodies := []struct{ path, body string }{
		{"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"a b c d e f g h i j"}],"max_tokens":5}`},
		{"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"a b c d e f g h i j"}]}`},
		{"/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"a b c d e f g h i j"}],"max_tokens":3}`},
		{"/v1/responses", `{"model":"hermes","input":"a b c d e f g h i j","max_output_tokens":4}`},
		{"/v1/messages", `{"model":"hermes","max_tokens":4,"system":"be brief","messages":[{"role":"user","content":"a b c d e f g h i j"}]}`},
		{"/anthropic/v1/messages?beta=true", `{"model":"hermes","max_tokens":6,"stream":true,"messages":[{"role":"user","content":[{"type":"text","text":"a b c d e f g h i j"}]}]}`},
	}
	const n = 120
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		if i == n/3 {
			wg.Wait()
			a.SetConfig(sim.Config{APIKey: "sk-ant-test", Fault: sim.Fault{Kind: sim.Status, Status: 529}})
		}
		if i == 2*n/3 {
			wg.Wait()
			a.SetConfig(cache)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bodies[i%len(bodies)]
			postOK(t, bases[i%3]+b.path, b.body)
		}()
	}
	wg.Wait()
	sa, so := a.Stats(), o.Stats()
	if sa.Completed == 0 || so.Completed == 0 {
		t.Fatalf("the Anthropic backend completed %d, the OpenAI one %d: no failover seen", sa.Completed, so.Completed)
	}
	p, _ := pricesFrom(ModelConfig{Price: &PriceConfig{Input: 3, CachedInput: ptr(0.30), Output: 15}}, "m")
	price := p[0]
	// Anthropic's rules: input_tokens (the prompt less reads and writes),
	// reads, 5-minute and 1-hour writes, output, each at its price.
	want := money.Money(sa.ReportedPrompt-9*sa.Completed)*price.Input + money.Money(2*sa.Completed)*price.CachedInput +
		money.Money(3*sa.Completed)*price.CacheWrite + money.Money(4*sa.Completed)*price.CacheWrite1h + money.Money(sa.ReportedTokens)*price.Output +
		money.Money(so.ReportedPrompt-2*so.Completed)*price.Input + money.Money(2*so.Completed)*price.CachedInput + money.Money(so.ReportedTokens)*price.Output
	for _, base := range bases {
		got := hermes(waitUsage(t, base, n))
		if got.Prompt != sa.ReportedPrompt+so.ReportedPrompt || got.Completion != sa.ReportedTokens+so.ReportedTokens ||
			got.CacheWrite5m != 3*sa.Completed || got.CacheWrite1h != 4*sa.Completed || got.Cost != want {
			t.Errorf("%s: ledger %+v (cost %s), want cost %s; backends reported %+v and %+v", base, got, got.Cost.USD(), want.USD(), sa, so)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// postOK posts body with the test key and wants a 200, read whole.
func postOK(t *testing.T, url, body string) {
	resp, err := http.DefaultClient.Do(authed("POST", url, body))
	if err != nil {
		t.Error(err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("%s: %d", url, resp.StatusCode)
	}
}
