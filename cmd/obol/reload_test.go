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
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
)

const reloadAdmin = "reload-admin-token-0123456789abcdef"

// reloadConfig is a configuration with hermes at input price in, and
// extra YAML (more models, another listen) appended under models or at
// the top.
func reloadConfig(upstream, dataDir string, in float64, models, top string) string {
	return fmt.Sprintf(`shutdown_drain: 0s
listen: "127.0.0.1:0"
data_dir: %q
log: {level: info, format: json}
reload: {watch: true, interval: 50ms}
%s
models:
  hermes:
    context_window: 32768
    price: {input: %v, output: 1}
    backends: [{url: %q, model: "backend-hermes"}]
%s
keys:
  - {id: key_test, tier: team, sha256: "bac49ce75937ef3db9b97fe5afc56953adaa1e48dd7e1dc724c7eab205da1279"}
`, dataDir, top, in, upstream, models)
}

// TestReload: under load from 8 clients, a price changed in the file
// applies from the next request (the ledger shows both prices), a model
// added answers, a listen changed is named as needing a restart, a bad
// file changes nothing and says why, by POST /v1/admin/reload, SIGHUP and
// the file watch alike; no request fails meanwhile.
func TestReload(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 2}))
	defer up.Close()
	dir, data := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "obol.yaml")
	write := func(s string) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // as a ConfigMap's files change: whole
			t.Fatal(err)
		}
	}
	write(reloadConfig(up.URL+"/v1", data, 1, "", ""))
	cmd, base, logs := startObolWith(t, path, "OBOL_ADMIN_TOKEN="+reloadAdmin)

	sent, failed, stopLoad := chatLoad(8, base)
	waitSent := func(n int64) { poll.Until(t, "requests under load", func() bool { return sent.Load() >= n }) }
	waitSent(50)

	// A new price and a new model, and a listen only a restart can change.
	write(reloadConfig(up.URL+"/v1", data, 5, `  minos:
    context_window: 8192
    backends: [{url: "`+up.URL+`/v1", model: "backend-minos"}]`, `admin_listen: "127.0.0.1:0"`))
	resp, body := adminPost(t, base+"/v1/admin/reload")
	var rep reloadReport
	json.Unmarshal(body, &rep)
	// The watch (every 50 ms) may have read the new file first: then the
	// POST finds the models unchanged, and the log has the watch's reload.
	byWatch := strings.Join(rep.Changed, ",") == "" && strings.Contains(logs.String(), `"trigger":"watch","status":"reloaded","changed":["models"]`)
	if resp.StatusCode != 200 || rep.Status != "reloaded" || (strings.Join(rep.Changed, ",") != "models" && !byWatch) ||
		strings.Join(rep.RestartRequired, ",") != "admin_listen" {
		t.Errorf("reload: %d %s", resp.StatusCode, body)
	}
	resp, err := http.DefaultClient.Do(authed("POST", base+"/v1/chat", `{"model":"minos","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("the added model: %v %v", resp, err)
	}
	waitSent(sent.Load() + 50)

	// A bad file: refused, by SIGHUP and by POST, the running one serving.
	write("models: {hermes: {context_window: 0}}\n")
	cmd.Process.Signal(syscall.SIGHUP)
	waitLog(t, logs, "configuration reload failed")
	if resp, body = adminPost(t, base+"/v1/admin/reload"); resp.StatusCode != 400 || !strings.Contains(string(body), "models.hermes.context_window") {
		t.Errorf("a bad file: %d %s", resp.StatusCode, body)
	}
	waitSent(sent.Load() + 50)

	// The watch: the file changed back to price 1 is read without a signal.
	write(reloadConfig(up.URL+"/v1", data, 1, "", ""))
	poll.Until(t, "the watch to drop minos", func() bool {
		resp, err := http.DefaultClient.Do(authed("GET", base+"/v1/models/minos", ""))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 404
	})
	waitSent(sent.Load() + 50)
	stopLoad()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the reloads", failed.Load(), sent.Load())
	}
	// Every request cost its price at arrival: 4 prompt tokens and 2 of
	// output at $1 or $5 per million input tokens.
	s := waitUsage(t, base, sent.Load()) // hermes's: the minos request is another model's
	h := s.ByModel["hermes"]
	atOne, atFive := money.Money(4*1_000_000+2*1_000_000), money.Money(4*5_000_000+2*1_000_000)
	n1 := (atFive*money.Money(h.Requests) - h.Cost) / (atFive - atOne)
	if n1 <= 0 || n1 >= money.Money(h.Requests) || atOne*n1+atFive*(money.Money(h.Requests)-n1) != h.Cost {
		t.Errorf("hermes cost %s over %d requests: not a mix of $1 and $5 prices", h.Cost.USD(), h.Requests)
	}
}

func adminPost(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, nil)
	req.Header.Set("Authorization", "Bearer "+reloadAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// TestReloadReplicas: three replicas on one Redis and one PostgreSQL,
// each reloading its own file under load: a price changed applies from
// the next request on each (the shared ledger shows both prices), a
// model added answers on every replica, a bad file leaves every replica
// serving the old one, and an admin token rotated through admin_tokens
// is never refused: 0 failed requests.
func TestReloadReplicas(t *testing.T) {
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 2}))
	defer up.Close()
	const oldTok, newTok = "old-admin-token-aaaa1111bbbb2222", "new-admin-token-cccc3333dddd4444"
	tokens := func(secrets ...string) string {
		out := "admin_tokens:\n"
		for _, s := range secrets {
			d := sha256.Sum256([]byte(s))
			out += fmt.Sprintf("  - {name: %q, sha256: %q}\n", s[:3], hex.EncodeToString(d[:]))
		}
		return out
	}
	stores := fmt.Sprintf("redis: {url: %q, prefix: %q, replicas: 3}\npostgres: {url: %q}\n", redistest.URL(), prefix, pgURL)
	var paths, bases []string
	writeAll := func(price float64, models, top string) {
		for _, p := range paths {
			tmp := p + ".new"
			os.WriteFile(tmp, []byte(reloadConfig(up.URL+"/v1", filepath.Join(filepath.Dir(p), "data"), price, models, stores+top)), 0o600)
			os.Rename(tmp, p)
		}
	}
	for range 3 {
		paths = append(paths, filepath.Join(t.TempDir(), "obol.yaml"))
	}
	writeAll(1, "", tokens(oldTok))
	for _, p := range paths {
		_, base, _ := startObolWith(t, p)
		bases = append(bases, base)
	}
	reloadAll := func(tok string, want int) {
		t.Helper()
		for _, b := range bases {
			req, _ := http.NewRequest("POST", b+"/v1/admin/reload", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			w := want
			if w == 0 { // the first replica's file is bad: refused there only
				w = map[bool]int{true: 400, false: 200}[b == bases[0]]
			}
			if resp.StatusCode != w {
				t.Errorf("%s reload: %d, want %d: %s", b, resp.StatusCode, w, body)
			}
		}
	}
	sent, failed, stopLoad := chatLoad(9, bases...)
	waitSent := func() {
		n := sent.Load() + 60
		poll.Until(t, "requests under load", func() bool { return sent.Load() >= n })
	}
	waitSent()
	minos := `  minos:
    context_window: 8192
    backends: [{url: "` + up.URL + `/v1", model: "backend-minos"}]`
	writeAll(5, minos, tokens(oldTok, newTok)) // a new price, a new model, a second admin token
	reloadAll(oldTok, 200)
	for _, b := range bases {
		if resp, err := http.DefaultClient.Do(authed("POST", b+"/v1/chat", `{"model":"minos","messages":[{"role":"user","content":"hi"}]}`)); err != nil || resp.StatusCode != 200 {
			t.Errorf("%s: the added model: %v %v", b, resp, err)
		}
	}
	waitSent()
	writeAll(5, minos, tokens(newTok)) // the old token removed
	reloadAll(newTok, 200)
	reloadAll(oldTok, 401)
	os.WriteFile(paths[0], []byte("listen: [\n"), 0o600) // a bad file on one replica
	reloadAll(newTok, 0)
	waitSent()
	stopLoad()
	if failed.Load() != 0 {
		t.Errorf("%d of %d requests failed during the reloads", failed.Load(), sent.Load())
	}
	s := waitUsage(t, bases[1], sent.Load())
	h := s.ByModel["hermes"]
	atOne, atFive := money.Money(4*1_000_000+2*1_000_000), money.Money(4*5_000_000+2*1_000_000)
	n1 := (atFive*money.Money(h.Requests) - h.Cost) / (atFive - atOne)
	if n1 <= 0 || n1 >= money.Money(h.Requests) || atOne*n1+atFive*(money.Money(h.Requests)-n1) != h.Cost {
		t.Errorf("hermes cost %s over %d requests: not a mix of $1 and $5 prices", h.Cost.USD(), h.Requests)
	}
}

// chatLoad runs n clients sending chats round the bases until stop is
// called, counting the requests sent and those that failed.
func chatLoad(n int, bases ...string) (sent, failed *atomic.Int64, stop func()) {
	sent, failed = new(atomic.Int64), new(atomic.Int64)
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				resp, err := http.DefaultClient.Do(authed("POST", bases[i%len(bases)]+"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
				sent.Add(1)
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	return sent, failed, func() { close(done); wg.Wait() }
}
