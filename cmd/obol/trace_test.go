package main

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
)

// otlpReceiver collects the spans posted to it over OTLP/HTTP.
type otlpReceiver struct {
	mu    sync.Mutex
	spans map[string]string // name → trace id (hex)
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(b, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				o.spans[s.Name] = hex.EncodeToString(s.TraceId)
			}
		}
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write([]byte{})
}

// TestTracesOverOTLP: with the standard OTEL_* variables set, a request's
// spans (the Redis calls' too) reach an OTLP collector in the client's
// trace; the last are flushed at shutdown.
func TestTracesOverOTLP(t *testing.T) {
	rec := &otlpReceiver{spans: map[string]string{}}
	col := httptest.NewServer(rec)
	defer col.Close()
	up := httptest.NewServer(sim.New(sim.Config{ReplyTokens: 3}))
	defer up.Close()
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	cmd, base, logs := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(),
		"TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL,
		"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="+col.URL+"/v1/traces", "OTEL_SERVICE_NAME=obol-test")
	const traceID = "0af7651916cd43dd8448eb211c80319c"
	req := authed("POST", base+"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`)
	req.Header.Set("Traceparent", "00-"+traceID+"-b7ad6b7169203331-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("%v %v", resp, err)
	}
	resp.Body.Close()
	stop(t, cmd, logs)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, name := range []string{"POST /v1/chat", "authenticate", "quota.admit", "chat hermes", "quota.settle", "evalsha"} {
		if rec.spans[name] != traceID {
			t.Errorf("span %q: trace %q, want %s; spans: %v", name, rec.spans[name], traceID, rec.spans)
		}
	}
	if !strings.Contains(logs.String(), "tracing: spans exported") {
		t.Error("the log does not say tracing is on")
	}
}
