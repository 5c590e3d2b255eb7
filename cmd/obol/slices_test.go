package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/loadtest/sim"
)

// TestReplicasBurstsWithSlices: bursts of 300 concurrent requests over
// three gateway processes, which admit from allowance slices (the
// default), are answered 200 exactly as often as the same burst sent to
// one of them, against TPD, concurrency, budgets strict or not, and a
// project's RPM and budget over two keys; against a key's RPM, exactly
// its allowance plus what refilled while the burst ran. The backend
// waits a second before answering, so that no request settles during a
// burst and one replica's count is exact.
func TestReplicasBurstsWithSlices(t *testing.T) {
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	s := sim.New(sim.Config{ReplyTokens: 2, FirstTokenDelay: time.Second})
	up := httptest.NewServer(s)
	defer up.Close()
	cases := []struct{ name, limits string }{
		{"tpd", "limits: {tpd: 20000}"},
		{"concurrency", "limits: {concurrency: 40}"},
		{"budget", "budget: {monthly: 0.01}"},
		{"strict budget", "budget: {monthly: 0.01, strict: true}"},
		{"project", "project: %s"},
	}
	var keys strings.Builder
	secret := func(name, who string) string { return "sk-slices-" + strings.ReplaceAll(name, " ", "-") + "-" + who }
	for _, c := range append(cases, struct{ name, limits string }{"rpm", "limits: {rpm: 60}"}) {
		for _, who := range []string{"one", "three"} {
			sum := sha256.Sum256([]byte(secret(c.name, who)))
			lim := c.limits
			if strings.Contains(lim, "%s") {
				lim = fmt.Sprintf(lim, "p_"+who)
			}
			fmt.Fprintf(&keys, "  - {id: %q, tier: open, sha256: %q, %s}\n", strings.ReplaceAll(c.name, " ", "_")+"_"+who,
				hex.EncodeToString(sum[:]), lim)
		}
	}
	cfg := sliceReplicasConfig(t, "replicas: 3", "{rpm: 0, tpm: 0, tpd: 0}", `projects:
  p_one: {limits: {rpm: 100}, budget: {monthly: 0.012}}
  p_three: {limits: {rpm: 100}, budget: {monthly: 0.012}}
keys:
`+keys.String())
	var bases []string
	for range 3 {
		_, base, _ := startSliceReplica(t, cfg, up.URL, prefix, pgURL)
		bases = append(bases, base)
	}
	const body = `{"model":"hermes","max_tokens":100,"messages":[{"role":"user","content":"hi"}]}`
	for _, c := range cases {
		one := burstOf(t, 300, bases[:1], body, secret(c.name, "one"))
		three := burstOf(t, 300, bases, body, secret(c.name, "three"))
		t.Logf("%s: one %v three %v", c.name, one, three)
		if one[200] != three[200] || one[200] == 0 || one[200] == 300 || one[200]+one[429] != 300 || three[200]+three[429] != 300 {
			t.Errorf("%s: one replica answered %v, three %v", c.name, one, three)
		}
	}
	if n := metricSum(t, bases, "obol_quota_slices_admissions_total"); n == 0 {
		t.Error("no request was admitted from a slice")
	} else {
		t.Logf("%v requests admitted from slices", n)
	}
	start := time.Now()
	codes := burstOf(t, 300, bases, body, secret("rpm", "three"))
	refilled := int(time.Since(start)/time.Second) + 1 // RPM 60 refills one a second
	if codes[200] < 60 || codes[200] > 60+refilled {
		t.Errorf("rpm 60: answered %v in %v, want 60 to %d × 200", codes, time.Since(start), 60+refilled)
	}
}

// sliceReplicasConfig writes the configuration of replicas on the test
// Redis and PostgreSQL, with redis settings beyond the test's, the open
// tier's limits, and the projects and keys (YAML, top level), and
// returns its path. It stops at once when told to: no drain.
func sliceReplicasConfig(t *testing.T, redis, open, rest string) string {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "replicas.yaml")
	err := os.WriteFile(cfg, []byte(`listen: "127.0.0.1:0"
shutdown_drain: 0s
data_dir: "${TEST_DATA_DIR}"
redis: {url: "${TEST_REDIS_URL}", prefix: "${TEST_REDIS_PREFIX}", fail_mode: closed, `+redis+`}
postgres: {url: "${TEST_POSTGRES_URL}"}
tiers:
  open: `+open+`
models:
  hermes:
    context_window: 32768
    price: {input: 1, output: 1}
    backends: [{url: "${TEST_UPSTREAM}", model: "backend-hermes"}]
`+rest), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startSliceReplica starts a replica of cfg in front of the backend at
// upstream, on the test Redis under prefix and the PostgreSQL at pgURL.
func startSliceReplica(t *testing.T, cfg, upstream, prefix, pgURL string) (*exec.Cmd, string, *syncbuf.Buffer) {
	return startObolWith(t, cfg, "TEST_UPSTREAM="+upstream+"/v1", "TEST_DATA_DIR="+t.TempDir(),
		"TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL)
}

// burstOf sends n concurrent requests of body to /v1/chat, spread over
// the replicas and the secrets, and counts the answers by status.
func burstOf(t *testing.T, n int, bases []string, body string, secrets ...string) map[int]int {
	t.Helper()
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", bases[i%len(bases)]+"/v1/chat", strings.NewReader(body))
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

// metricSum sums a Prometheus counter over the replicas' /metrics.
func metricSum(t *testing.T, bases []string, name string) float64 {
	t.Helper()
	var sum float64
	for _, b := range bases {
		resp, err := http.Get(b + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, line := range strings.Split(string(body), "\n") {
			if strings.HasPrefix(line, name) {
				var v float64
				fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
				sum += v
			}
		}
	}
	return sum
}

// TestSlicesGivenBackAtShutdown: a replica that admitted from slices and
// is told to stop gives back what they held: another replica then sees
// nothing held of the key's budget and, of its day, only the tokens the
// ledger recorded.
func TestSlicesGivenBackAtShutdown(t *testing.T) {
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 2}))
	defer up.Close()
	sum := sha256.Sum256([]byte(testSecret))
	// Slices that admit for 4 s, their rate measured over 1 s: the
	// requests run 2 s, and a slice taken then ends after the stop.
	cfg := sliceReplicasConfig(t, "slices: 4s", "{rpm: 0, tpm: 0, tpd: 10000000}", `keys:
  - {id: key_test, tier: open, sha256: "`+hex.EncodeToString(sum[:])+`", budget: {monthly: 1000}}
`)
	start := func() (*exec.Cmd, string, *syncbuf.Buffer) { return startSliceReplica(t, cfg, up.URL, prefix, pgURL) }
	a, baseA, logsA := start()
	_, baseB, _ := start()
	// Steady requests for two seconds: a's rate is known, its slices hold
	// more than the request at hand.
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); {
		resp, err := http.DefaultClient.Do(authed("POST", baseA+"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if n := metricSum(t, []string{baseA}, "obol_quota_slices_admissions_total"); n == 0 {
		t.Fatal("no request was admitted from a slice")
	}
	a.Process.Signal(syscall.SIGTERM)
	waitExit(t, a, logsA)

	var key struct {
		Remaining struct {
			TokensToday int64 `json:"tokens_today"`
		} `json:"remaining"`
		Budget struct {
			Held float64 `json:"held"`
		} `json:"budget"`
	}
	resp, err := http.DefaultClient.Do(authed("GET", baseB+"/v1/key", ""))
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&key)
	resp.Body.Close()
	u, _ := usageNow(t, baseB)
	if key.Budget.Held != 0 || key.Remaining.TokensToday != 10_000_000-u.TotalTokens || u.TotalTokens == 0 {
		t.Errorf("after a's shutdown: %+v held, %d tokens left today; the ledger has %d tokens", key.Budget.Held,
			key.Remaining.TokensToday, u.TotalTokens)
	}
}
