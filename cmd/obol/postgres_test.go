package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/usage"
)

// TestRedisRestartLosesNothing: keys and usage live in PostgreSQL, so a
// Redis that restarts empty (it keeps nothing on disk) loses no key and
// no usage; only its counters start over.
func TestRedisRestartLosesNothing(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 4}))
	defer up.Close()
	rs := redistest.Start(t)
	_, pgURL := pgtest.Shared(t)
	_, base, _ := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(),
		"TEST_REDIS_URL="+rs.URL(), "TEST_POSTGRES_URL="+pgURL, "OBOL_ADMIN_TOKEN="+cliToken)
	k := createdKey(t, base, "--tier", "pro", "--name", "survivor")
	chat := `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`
	for i := 0; i < 3; i++ {
		resp := send(t, base, k.Secret, "/v1/chat", chat)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("before the restart: %d", resp.StatusCode)
		}
	}
	before := waitUsageOf(t, base, k.Secret, 3)
	rs.Restart() // empty
	resp := send(t, base, k.Secret, "/v1/chat", chat)
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("the key after Redis restarted empty: %d", resp.StatusCode)
	}
	after := waitUsageOf(t, base, k.Secret, 4)
	if after.Prompt != before.Prompt*4/3 || after.Completion != 16 {
		t.Errorf("usage before %+v, after %+v", before, after)
	}
}

// TestMigrateCommand: obol migrate applies the schema without serving,
// and a second run finds nothing to do.
func TestMigrateCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "obol.yaml")
	os.WriteFile(cfg, []byte(`postgres: {url: "`+pgtest.EmptySchema(t)+`"}
models: {hermes: {context_window: 1000, backends: [{url: "http://127.0.0.1:9000/v1", model: "m"}]}}
`), 0o600)
	for i, first := range []bool{true, false} {
		out, err := cli(t, "migrate", "-config", cfg)
		if err != nil || !strings.Contains(out, "migrations applied") || strings.Contains(out, " 0 migrations") == first {
			t.Errorf("run %d: %v: %s", i+1, err, out)
		}
	}
}

// waitUsageOf waits for the ledger of the key of secret to count n
// requests, and returns its hermes row.
func waitUsageOf(t *testing.T, base, secret string, n int64) usage.Row {
	t.Helper()
	var row usage.Row
	poll.Until(t, "the ledger to count the requests", func() bool {
		req, _ := http.NewRequest("GET", base+"/v1/usage", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var s usage.Summary
		json.NewDecoder(resp.Body).Decode(&s)
		row = s.ByModel["hermes"]
		return row.Requests >= n
	})
	if row.Requests != n {
		t.Fatalf("ledger counts %d requests, want %d", row.Requests, n)
	}
	return row
}
