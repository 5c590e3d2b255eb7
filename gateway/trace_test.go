package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
)

// withTracing records every span in memory, the models client's too
// (through the global provider, restored after the test).
func withTracing(t *testing.T) (*tracetest.InMemoryExporter, envOption) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	return exp, func(c *envConfig) { c.Tracer = tp.Tracer("test") }
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := map[string]string{}
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

// TestTraces: a client's traceparent is continued; the request's span
// has its GenAI attributes and children for authentication, admission,
// the backend attempt (with a first-token event) and settlement; the
// backend gets the same trace.
func TestTraces(t *testing.T) {
	exp, opt := withTracing(t)
	e := newEnv(t, sim.Config{ReplyTokens: 3}, opt)
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	req, _ := http.NewRequest("POST", e.gw.URL+"/v1/chat/stream", strings.NewReader(hi+`}`))
	req.Header.Set("Authorization", "Bearer "+keyAll)
	req.Header.Set("Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	var server sdktrace.ReadOnlySpan
	poll.Until(t, "the server span", func() bool {
		for _, s := range exp.GetSpans().Snapshots() {
			if s.Name() == "POST /v1/chat/stream" {
				server = s
				return true
			}
		}
		return false
	})
	if got := server.SpanContext().TraceID().String(); got != traceID {
		t.Errorf("trace id %s, want the client's %s", got, traceID)
	}
	if server.Parent().SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("parent %s, want the client's span", server.Parent().SpanID())
	}
	a := attrs(server.Attributes())
	for k, v := range map[string]string{
		"gen_ai.operation.name": "chat", "gen_ai.request.model": "hermes", "gen_ai.response.model": "hermes",
		"gen_ai.usage.input_tokens": "4", "gen_ai.usage.output_tokens": "3", "gen_ai.response.finish_reasons": `["stop"]`,
		"http.response.status_code": "200", "http.route": "/v1/chat/stream", "obol.key_id": "key_all",
		"obol.request_id": resp.Header.Get("X-Request-Id"), "obol.backend": "sim",
	} {
		if a[k] != v {
			t.Errorf("%s = %q, want %q", k, a[k], v)
		}
	}
	// The settlement runs after the answer, on its own.
	children := map[string]sdktrace.ReadOnlySpan{}
	poll.Until(t, "the settlement's span", func() bool {
		for _, s := range exp.GetSpans().Snapshots() {
			if s.Parent().SpanID() == server.SpanContext().SpanID() {
				children[s.Name()] = s
			}
		}
		return children["quota.settle"] != nil
	})
	for _, name := range []string{"authenticate", "quota.admit", "chat hermes", "quota.settle"} {
		if children[name] == nil {
			t.Errorf("no %q child span; children: %v", name, keysOf(children))
		}
	}
	if b := children["chat hermes"]; b != nil {
		if len(b.Events()) != 1 || b.Events()[0].Name != "first_token" || attrs(b.Attributes())["obol.backend"] != "sim" {
			t.Errorf("backend span: events %v, attributes %v", b.Events(), b.Attributes())
		}
	}
	// The backend was called within the same trace.
	got := e.sim.Requests()[0].Header.Get("Traceparent")
	if !strings.HasPrefix(got, "00-"+traceID+"-") {
		t.Errorf("the backend got traceparent %q", got)
	}
	for _, s := range exp.GetSpans().Snapshots() {
		for _, kv := range s.Attributes() {
			if strings.Contains(kv.Value.Emit(), keyAll) {
				t.Errorf("a secret in span %s", s.Name())
			}
		}
	}
}

func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
