package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/obol/obol/loadtest/sim"
)

// TestH2CBackend: a backend marked h2c, which speaks only HTTP/2 without
// TLS, gets every request over HTTP/2, concurrent streams sharing
// connections, and its streams reach the client whole.
func TestH2CBackend(t *testing.T) {
	s := sim.New(sim.Config{ReplyTokens: 5})
	var h2, other atomic.Int64
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 {
			h2.Add(1)
		} else {
			other.Add(1)
		}
		s.ServeHTTP(w, r)
	}))
	up.Config.Protocols = new(http.Protocols)
	up.Config.Protocols.SetUnencryptedHTTP2(true)
	var conns atomic.Int64
	up.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	up.Start()
	defer up.Close()
	cfg := filepath.Join(t.TempDir(), "h2c.yaml")
	err := os.WriteFile(cfg, []byte(`listen: "127.0.0.1:0"
data_dir: "`+t.TempDir()+`"
tiers: {open: {rpm: 0, tpm: 0, tpd: 0}}
models:
  hermes:
    context_window: 32768
    backends: [{url: "`+up.URL+`/v1", model: "m", h2c: true}]
keys:
  - {id: k, tier: open, sha256: "bac49ce75937ef3db9b97fe5afc56953adaa1e48dd7e1dc724c7eab205da1279"}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	_, base, _ := startObolWith(t, cfg)
	stream := func() {
		req, _ := http.NewRequest("POST", base+"/v1/chat/stream", strings.NewReader(`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer sk-demo-free-4f1c9a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasSuffix(string(body), "data: [DONE]\n\n") {
			t.Errorf("%d: %s", resp.StatusCode, body)
		}
	}
	// The first connection is made; concurrent requests made before it
	// is up would each dial.
	stream()
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream()
		}()
	}
	wg.Wait()
	if h2.Load() != 21 || other.Load() != 0 {
		t.Errorf("the backend saw %d HTTP/2 requests and %d others, want 21 and 0", h2.Load(), other.Load())
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("21 streams took %d connections to the backend, want them on one", n)
	}
}
