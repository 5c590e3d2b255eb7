package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"

	bolt "go.etcd.io/bbolt"

	"github.com/obol/obol/loadtest/sim"
)

// binDir holds the binary buildObol made, if it made one.
var binDir string

// buildObol compiles the command once for the tests that run it as a process.
var buildObol = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "obol-bin")
	if err != nil {
		return "", err
	}
	binDir = dir
	bin := filepath.Join(dir, "obol")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", errors.New(string(out))
	}
	return bin, nil
})

// TestMain removes the binary buildObol made.
func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var listening = regexp.MustCompile(`"msg":"obol listening","addr":"([^"]+)"`)

// startObolWith runs the gateway as a process on a free port, with a
// config file and more environment, and returns its base URL.
func startObolWith(t *testing.T, config string, env ...string) (*exec.Cmd, string, *syncbuf.Buffer) {
	t.Helper()
	return startObolIn(t, "", config, env...)
}

// startObolIn is startObolWith running in dir ("" for this one).
func startObolIn(t *testing.T, dir, config string, env ...string) (*exec.Cmd, string, *syncbuf.Buffer) {
	t.Helper()
	bin, err := buildObol()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	cmd := exec.Command(bin, "serve", "-config", config, "-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	logs := &syncbuf.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var addr string
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" {
		if m := listening.FindStringSubmatch(logs.String()); m != nil {
			addr = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("gateway did not start: %s", logs)
		} else {
			time.Sleep(10 * time.Millisecond)
		}
	}
	return cmd, "http://" + addr, logs
}

// TestSIGTERMLetsStreamsFinish: on SIGTERM the gateway stops accepting,
// the stream in flight runs to [DONE], and the process exits 0.
func TestSIGTERMLetsStreamsFinish(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 30, TokensPerSecond: 60}))
	defer up.Close()
	dataDir := t.TempDir()
	cmd, base, logs := startObolWith(t, "testdata/good.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+dataDir)

	br := openStream(t, base)

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "shutting down")
	// New connections are refused while the stream goes on.
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("a new connection was accepted after SIGTERM")
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("stream cut: %v", err)
	}
	if !strings.HasSuffix(string(rest), "data: [DONE]\n\n") || !strings.Contains(string(rest), `"usage"`) {
		t.Errorf("stream did not finish: …%s", tail(string(rest)))
	}
	waitExit(t, cmd, logs)
	if !strings.Contains(logs.String(), `"stream_outcome":"completed"`) {
		t.Error("the finished stream has no access log line")
	}
	// The embedded store was closed cleanly: the day's tokens are on disk.
	db, err := bolt.Open(filepath.Join(dataDir, "obol.db"), 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	var spent uint64
	db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket([]byte("quota_tpd")); b != nil {
			if v := b.Get([]byte(time.Now().UTC().Format("20060102") + "/key_test")); len(v) == 8 {
				spent = binary.BigEndian.Uint64(v)
			}
		}
		return nil
	})
	db.Close()
	if spent < 30 {
		t.Errorf("key_test's day on disk: %d tokens, want at least the 30 streamed", spent)
	}
	// And the ledger has the stream, as the next start serves it.
	_, base, _ = startObolWith(t, "testdata/good.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+dataDir)
	if s, _ := usageNow(t, base); hermes(s).Requests != 1 || hermes(s).Completion != 30 {
		t.Errorf("ledger after the restart: %+v", s)
	}
}

// TestBadConfigExits2: a configuration at fault, in the file or in the
// environment, ends serve with status 2 and a message naming it, never a
// panic, whatever was already built.
func TestBadConfigExits2(t *testing.T) {
	bin, err := buildObol()
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	for _, c := range []struct {
		config string
		env    []string
		want   string
	}{
		{"testdata/bad/no-backend-model.yaml", nil, "models.hermes.backends[0].model"},
		// Failing after the metrics, tracing and the data dir were set up.
		{"testdata/good.yaml", []string{"OBOL_ADMIN_TOKEN=short", "TEST_UPSTREAM=http://127.0.0.1:9/v1", "TEST_DATA_DIR=" + t.TempDir()},
			"OBOL_ADMIN_TOKEN: at least 16 characters"},
		{"testdata/good.yaml", []string{"OBOL_ADMIN_TOKEN=aaaaaaaaaaaaaaaa", "TEST_UPSTREAM=http://127.0.0.1:9/v1", "TEST_DATA_DIR=" + t.TempDir()},
			"OBOL_ADMIN_TOKEN: too easy to guess"},
		// A webhook whose signing secret is not in the environment.
		{"testdata/budget.yaml", []string{"TEST_UPSTREAM=http://127.0.0.1:9/v1", "TEST_DATA_DIR=" + t.TempDir(), "TEST_WEBHOOK_URL=http://127.0.0.1:9/hook"},
			"webhooks[0].secret_env: the environment variable TEST_WEBHOOK_SECRET is not set"},
		{"testdata/budget.yaml", []string{"TEST_UPSTREAM=http://127.0.0.1:9/v1", "TEST_DATA_DIR=" + t.TempDir(), "TEST_WEBHOOK_URL=http://127.0.0.1:9/hook", "TEST_WEBHOOK_SECRET=short"},
			"webhooks[0].secret_env: the secret in TEST_WEBHOOK_SECRET is under 16 characters"},
	} {
		cmd := exec.Command(bin, "serve", "-config", c.config)
		cmd.Env = append(os.Environ(), c.env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err = cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 || strings.Contains(stderr.String(), "panic") {
			t.Errorf("%s %v: exit %v, want 2\n%s", c.config, c.env, err, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%s: stderr does not name the fault: %s", c.config, stderr.String())
		}
	}
}

func TestRunUsage(t *testing.T) {
	var out bytes.Buffer
	tests := []struct {
		args    []string
		stdin   string
		wantErr bool
		want    string
	}{
		{nil, "", true, ""},
		{[]string{"frobnicate"}, "", true, ""},
		{[]string{"serve"}, "", true, ""},
		{[]string{"hash-key"}, "sk-demo-free-4f1c9a\n", false, "bac49ce75937ef3db9b97fe5afc56953adaa1e48dd7e1dc724c7eab205da1279\n"},
		{[]string{"hash-key"}, "", true, ""},
	}
	for _, tt := range tests {
		out.Reset()
		err := run(context.Background(), tt.args, strings.NewReader(tt.stdin), &out, io.Discard, envMap(nil))
		if (err != nil) != tt.wantErr {
			t.Errorf("%v: err = %v", tt.args, err)
		}
		var ue *usageError
		if err != nil && !errors.As(err, &ue) {
			t.Errorf("%v: %T is not a usage error (exit 2)", tt.args, err)
		}
		if out.String() != tt.want {
			t.Errorf("%v: output %q, want %q", tt.args, out.String(), tt.want)
		}
	}
}

func waitLog(t *testing.T, logs *syncbuf.Buffer, s string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log: %s", s, logs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func tail(s string) string {
	if len(s) > 300 {
		return s[len(s)-300:]
	}
	return s
}

// TestH2C: with h2c on, HTTP/2 without TLS and HTTP/1.1 are both served,
// streams included.
func TestH2C(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 5}))
	defer up.Close()
	_, base, _ := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(), "TEST_H2C=true")
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	clients := map[string]*http.Client{
		"HTTP/2.0": {Transport: &http.Transport{Protocols: &h2}},
		"HTTP/1.1": {Transport: &http.Transport{}},
	}
	for proto, hc := range clients {
		for _, body := range []string{
			`{"model":"hermes","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`,
		} {
			req, _ := http.NewRequest("POST", base+"/v1/chat/completions", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testSecret)
			resp, err := hc.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", proto, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Proto != proto || resp.StatusCode != 200 {
				t.Errorf("%s: %s %d", proto, resp.Proto, resp.StatusCode)
			}
			stream := strings.Contains(body, `"stream":true`)
			if stream && !strings.HasSuffix(string(b), "data: [DONE]\n\n") || !stream && !strings.Contains(string(b), `"chat.completion"`) {
				t.Errorf("%s: %s", proto, b)
			}
		}
	}
}

// TestListenerTimeouts: the public and the admin listener are built
// alike, with the header timeout and the idle timeout (issue 15: the
// admin listener kept idle connections forever).
func TestListenerTimeouts(t *testing.T) {
	a := &app{log: slog.New(slog.DiscardHandler), gw: mustGateway(t)}
	for _, srv := range []*http.Server{a.server(a.gw), a.server(a.gw.AdminHandler())} {
		if srv.IdleTimeout != 2*time.Minute || srv.ReadHeaderTimeout != 10*time.Second {
			t.Errorf("idle %v, header %v", srv.IdleTimeout, srv.ReadHeaderTimeout)
		}
	}
}

// mustGateway is a gateway with one model and no keys, for tests of how
// it is served.
func mustGateway(t *testing.T) *gateway.Server {
	t.Helper()
	cat, err := models.NewCatalog([]models.Model{{Name: "hermes", ContextWindow: 1000,
		Backends: []models.Backend{{Name: "b", URL: "http://127.0.0.1:1/v1", Model: "m"}}}})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := keys.NewRegistry(context.Background(), nil, keys.Options{})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Options{Catalog: cat, Upstream: models.NewClient(models.BreakerOptions{}),
		Keys: reg, Quota: quota.NewMemory(), Ledger: nopLedger{}})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

type nopLedger struct{}

func (nopLedger) Record(usage.Record) <-chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}

func (nopLedger) Summary(context.Context, string, string) (*usage.Summary, error) {
	return &usage.Summary{}, nil
}

// openStream starts a native stream with the demo's free key and reads
// its first event; the rest is the caller's to read.
func openStream(t *testing.T, base string) *bufio.Reader {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/v1/chat/stream", strings.NewReader(`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer sk-demo-free-4f1c9a")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); err != nil || !strings.HasPrefix(line, "data: ") {
		t.Fatalf("first line %q, %v", line, err)
	}
	return br
}

// TestSIGHUPReloadsWithoutHarm: SIGHUP during a stream reloads the
// configuration; the stream runs to [DONE] on the one it started with
// and the gateway goes on serving.
func TestSIGHUPReloadsWithoutHarm(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 20, TokensPerSecond: 60}))
	defer up.Close()
	cmd, base, logs := startObolWith(t, "testdata/good.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir())
	br := openStream(t, base)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, `"msg":"configuration reloaded","trigger":"SIGHUP","status":"unchanged"`)
	rest, err := io.ReadAll(br)
	if err != nil || !strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Fatalf("the stream after SIGHUP: %v …%s", err, tail(string(rest)))
	}
	if r, err := http.Get(base + "/healthz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("serving after SIGHUP: %v", err)
	}
	waitLog(t, logs, `"stream_outcome":"completed"`)
}

// TestSecondProcessOnOneDataDir: a second obol on a data_dir another one
// holds exits saying so (status 1), never with a panic.
func TestSecondProcessOnOneDataDir(t *testing.T) {
	dir := t.TempDir()
	env := []string{"TEST_UPSTREAM=http://127.0.0.1:9/v1", "TEST_DATA_DIR=" + dir}
	startObolWith(t, "testdata/good.yaml", env...)
	bin, err := buildObol()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "-config", "testdata/good.yaml", "-addr", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || strings.Contains(stderr.String(), "panic") ||
		!strings.Contains(stderr.String(), "held by another process") {
		t.Errorf("a second obol on one data_dir: %v\n%s", err, stderr.String())
	}
}

// TestSIGTERMDrains: on SIGTERM, /readyz answers 503 "draining" for
// shutdown_drain while the listener still serves new connections and
// requests; then the gateway stops accepting and exits 0.
func TestSIGTERMDrains(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 3}))
	defer up.Close()
	cmd, base, logs := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(), "TEST_DRAIN=2s")
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitLog(t, logs, "draining")
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatalf("a new connection refused while draining: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(string(body), `"status":"draining"`) {
		t.Errorf("readyz while draining: %d %s", resp.StatusCode, body)
	}
	resp, err = http.DefaultClient.Do(authed("POST", base+"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a request while draining: %v %v", resp, err)
	}
	resp.Body.Close()
	if strings.Contains(logs.String(), "shutting down") {
		t.Error("the grace began before the drain ended")
	}
	waitExit(t, cmd, logs)
	waitLog(t, logs, "shutting down")
}

// TestReadyzPostgresDown: with PostgreSQL stopped under a running
// replica (fail_mode open), /readyz answers 200 degraded, naming it, and
// requests of known keys are served; it is ready again once PostgreSQL is.
func TestReadyzPostgresDown(t *testing.T) {
	pg := pgtest.Start(t)
	_, prefix := redistest.Shared(t)
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 2}))
	defer up.Close()
	_, base, _ := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(),
		"TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pg.URL())
	ready := func() (int, string) {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep struct {
			Status string
			Checks map[string]string
		}
		json.NewDecoder(resp.Body).Decode(&rep)
		return resp.StatusCode, rep.Status + " " + rep.Checks["postgres"]
	}
	if code, s := ready(); code != 200 || s != "ready ok" {
		t.Fatalf("PostgreSQL up: %d %s", code, s)
	}
	pg.Stop()
	poll.Until(t, "readyz to name PostgreSQL, degraded", func() bool {
		code, s := ready()
		return code == 200 && strings.HasPrefix(s, "degraded unreachable: keys already known authenticate")
	})
	resp, err := http.DefaultClient.Do(authed("POST", base+"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("a request with PostgreSQL down: %v %v", resp, err)
	}
	pg.Restart()
	poll.Until(t, "readyz to recover", func() bool { code, s := ready(); return code == 200 && s == "ready ok" })
}
