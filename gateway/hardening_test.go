package gateway_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

// TestReservationBound: admission reserves an upper bound of what a
// request can be charged: n choices of the larger output cap, or of the
// model's max_output_tokens, which is then sent to the backend.
func TestReservationBound(t *testing.T) {
	lim := quota.Limits{TPM: 100, TPD: 250_000}
	e := newEnv(t, sim.Config{ReplyTokens: 2}, withLimits(keyAll, lim), func(c *envConfig) {
		c.models[0].MaxOutputTokens, c.models[0].ContextWindow = 40, 64_000
	})
	tests := []struct {
		name, extra string
		status      int
	}{
		{"n choices within TPM", `,"n":2,"max_tokens":45`, 200}, // 1 + 2×45 = 91
		{"n choices over TPM", `,"n":3,"max_tokens":45`, 429},   // 1 + 3×45
		{"the larger of two caps", `,"max_completion_tokens":1,"max_tokens":200`, 429},
		{"the larger of two caps, other order", `,"max_tokens":1,"max_completion_tokens":200`, 429},
		{"no cap: the model's, n times", `,"n":3`, 429}, // 1 + 3×40
		{"no cap: the model's", ``, 200},
		{"a day's worth of n", `,"n":128,"max_tokens":30000`, 429},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.sim.Stats().Requests
			resp := e.post(t, "/v1/chat", keyAll, hi+tt.extra+`}`)
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
			if tt.status == 429 && (resp.Header.Get("X-Should-Retry") != "false" || e.sim.Stats().Requests != before) {
				t.Errorf("too large: x-should-retry %q, backend called %d times", resp.Header.Get("X-Should-Retry"), e.sim.Stats().Requests-before)
			}
		})
	}
	reqs := e.sim.Requests()
	last := reqs[len(reqs)-1]
	if last.MaxTokens != 40 {
		t.Errorf("a request with no cap reached the backend with max_tokens %d, want the model's 40", last.MaxTokens)
	}
}

// rawRequest sends head and the first bytes of a body it promises more
// of, then waits for the answer: the status and whether the server
// closed the connection after it.
func rawRequest(t *testing.T, addr, head string) (status int, body string, closed bool) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang fails the test rather than the run
	if _, err := io.WriteString(conn, head+"{\"mod"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("X-Request-Id") == "" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("answer without x-request-id or JSON: %v", resp.Header)
	}
	_, err = br.ReadByte()
	return resp.StatusCode, string(b), err == io.EOF
}

// TestSlowBody: a body that does not arrive within the body timeout is
// answered 408 with a JSON error and its connection closed, whatever the
// route, the key, or whether the handler reads bodies at all.
func TestSlowBody(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAdmin(t), func(c *envConfig) { c.BodyTimeout = 200 * time.Millisecond })
	addr := strings.TrimPrefix(e.gw.URL, "http://")
	head := func(method, path, key string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", method, path, key)
	}
	for _, tt := range []struct{ method, path, key string }{
		{"POST", "/v1/chat", keyAll},
		{"POST", "/v1/chat", "sk-not-a-key"},
		{"POST", "/v1/chat/completions", keyAll},
		{"GET", "/v1/models", keyAll},
		{"GET", "/v1/models", "sk-not-a-key"},
		{"POST", "/v1/admin/keys", adminToken},
		{"POST", "/v1/nowhere", keyAll},
		{"DELETE", "/v1/chat", keyAll},
	} {
		status, body, closed := rawRequest(t, addr, head(tt.method, tt.path, tt.key))
		if status != 408 || !strings.Contains(body, `"code":"request_timeout"`) || !closed {
			t.Errorf("%s %s (%s): %d %s, closed %v", tt.method, tt.path, tt.key, status, body, closed)
		}
	}
	// A body that arrives in time is served, and a stream after it is
	// not cut by the body's deadline.
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	if events, _ := readEvents(t, resp.Body); resp.StatusCode != 200 || len(events) == 0 || !events[len(events)-1].done {
		t.Errorf("a stream after its body: %d, %d events", resp.StatusCode, len(events))
	}
}

// TestStreamOutlivesBodyTimeout: the deadline that bounds a body is
// lifted once the body is in, so a stream longer than it runs to its end.
func TestStreamOutlivesBodyTimeout(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 20, TokensPerSecond: 40}, func(c *envConfig) { c.BodyTimeout = 100 * time.Millisecond })
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	events, _ := readEvents(t, resp.Body)
	if resp.StatusCode != 200 || len(events) == 0 || !events[len(events)-1].done {
		t.Fatalf("stream: %d, %d events", resp.StatusCode, len(events))
	}
	for _, ev := range events {
		if ev.m["error"] != nil {
			t.Fatalf("the stream was cut: %s", ev.raw)
		}
	}
}

// TestFailedAuthGuard: failed credentials from one address are held to
// the allowance (a burst of 10, then one every 6 s), answered 429 past
// it; a valid key and the admin token from that address are never
// refused. With a shared count, the allowance is for every replica
// together.
func TestFailedAuthGuard(t *testing.T) {
	rdb, prefix := redistest.Shared(t)
	shared := func(c *envConfig) {
		c.FailureGuard = quota.NewSharedFailures(rdb, prefix, quota.DefaultFailureLimit)
	}
	a := newEnv(t, sim.Config{ReplyTokens: 1}, withAdmin(t), shared)
	b := newEnv(t, sim.Config{ReplyTokens: 1}, shared)
	statuses := map[int]int{}
	for i := 0; i < 30; i++ {
		e := a
		if i%2 == 1 {
			e = b
		}
		resp := e.post(t, "/v1/chat", "sk-bad-"+fmt.Sprint(i), hi+`}`)
		io.Copy(io.Discard, resp.Body)
		statuses[resp.StatusCode]++
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") == "" {
			t.Error("a 429 without Retry-After")
		}
		// The valid key and the admin token keep working in between.
		if i%5 == 0 {
			if resp := a.post(t, "/v1/chat", keyAll, hi+`}`); resp.StatusCode != 200 {
				t.Errorf("after %d bad keys, the valid key got %d", i+1, resp.StatusCode)
			}
			if resp, _ := a.do(t, "GET", "/v1/admin/keys", adminToken, ""); resp.StatusCode != 200 {
				t.Errorf("after %d bad keys, the admin token got %d", i+1, resp.StatusCode)
			}
		}
	}
	// 10 at once, and at most a few more refilled while the test ran.
	if statuses[401] < 10 || statuses[401] > 12 || statuses[401]+statuses[429] != 30 {
		t.Errorf("bad keys across two replicas: %v, want 10 (or a refill more) 401s and the rest 429", statuses)
	}
	// A bad admin token is a failure too.
	if resp, _ := a.do(t, "GET", "/v1/admin/keys", "wrong-admin-token-0123456789", ""); resp.StatusCode != 429 {
		t.Errorf("a bad admin token past the allowance: %d", resp.StatusCode)
	}
}

// TestReadyzNamesNoBackend: public readiness says ready or not, per
// model, and never a backend's name or address.
func TestReadyzNamesNoBackend(t *testing.T) {
	e := newEnv(t, sim.Config{})
	resp, b := e.do(t, "GET", "/readyz", "", "")
	if resp.StatusCode != 200 || strings.Contains(string(b), "sim") || strings.Contains(string(b), "127.0.0.1") || strings.Contains(string(b), "backends") {
		t.Errorf("readyz: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Error("readyz without x-request-id")
	}
}

// TestEveryAnswerIsJSON: paths the router does not know, odd methods and
// health routes answer with JSON (or no body) and x-request-id, never a
// redirect.
func TestEveryAnswerIsJSON(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAdmin(t))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range []struct {
		method, path string
		status       int
	}{
		{"POST", "/V1/CHAT", 404},
		{"POST", "//v1/chat", 404},
		{"POST", "/v1/chat/", 404},
		{"POST", "/v1/./chat", 404},
		{"GET", "/v1/admin/keys/", 404},
		{"PUT", "/v1/chat", 405},
		{"GET", "/v1/chat", 405},
		{"OPTIONS", "/v1/chat", 204},
		{"GET", "/healthz", 200},
		{"GET", "/readyz", 200},
	} {
		req, _ := http.NewRequest(tt.method, e.gw.URL+tt.path, strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+keyAll)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s: %d (x-request-id %q), want %d", tt.method, tt.path, resp.StatusCode, resp.Header.Get("X-Request-Id"), tt.status)
		}
		if tt.status != 204 && !json.Valid(b) {
			t.Errorf("%s %s: not JSON: %q", tt.method, tt.path, b)
		}
		if tt.status == 204 && (len(b) != 0 || resp.Header.Get("Allow") == "") {
			t.Errorf("OPTIONS: %q, Allow %q", b, resp.Header.Get("Allow"))
		}
	}
}

// TestAdminBodyIsOneObject: trailing data after the JSON object is
// refused, and nothing is created.
func TestAdminBodyIsOneObject(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAdmin(t))
	for _, body := range []string{`{"tier":"pro"}{"tier":"team"}`, `{"tier":"pro"} x`, `{"tier":"pro"}[]`} {
		if resp, b := e.do(t, "POST", "/v1/admin/keys", adminToken, body); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", body, resp.StatusCode, b)
		}
	}
	if _, b := e.do(t, "GET", "/v1/admin/keys", adminToken, ""); strings.Contains(string(b), `"source":"api"`) {
		t.Errorf("a refused body created a key: %s", b)
	}
	if resp, _ := e.do(t, "POST", "/v1/admin/keys", adminToken, `{"tier":"pro"}  `+"\n"); resp.StatusCode != 200 && resp.StatusCode != 201 {
		t.Errorf("one object and white space: %d", resp.StatusCode)
	}
}

var (
	_ gateway.FailureGuard = (*quota.Failures)(nil)
	_ gateway.FailureGuard = (*quota.SharedFailures)(nil)
)

// TestHeadAndHealthAliases: HEAD is answered on every GET route, without
// a body; /health and /api/v1/health answer as /healthz does.
func TestHeadAndHealthAliases(t *testing.T) {
	e := newEnv(t, sim.Config{})
	for _, tt := range []struct{ method, path, key string }{
		{"HEAD", "/healthz", ""}, {"HEAD", "/readyz", ""}, {"HEAD", "/v1/models", keyAll},
		{"HEAD", "/v1/models/hermes", keyAll}, {"HEAD", "/v1/usage", keyAll},
		{"GET", "/health", ""}, {"GET", "/api/v1/health", ""}, {"HEAD", "/api/v1/health", ""},
	} {
		req, _ := http.NewRequest(tt.method, e.gw.URL+tt.path, nil)
		if tt.key != "" {
			req.Header.Set("Authorization", "Bearer "+tt.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") == "" {
			t.Errorf("%s %s: %d", tt.method, tt.path, resp.StatusCode)
		}
		if tt.method == "HEAD" && len(b) != 0 || tt.method == "GET" && !strings.Contains(string(b), `"status":"ok"`) {
			t.Errorf("%s %s: body %q", tt.method, tt.path, b)
		}
	}
}
