package gateway_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/loadtest/sim"
)

// TestCORS: an allowed origin's preflight is answered without a key,
// with the SDKs' headers allowed; its answers expose the rate-limit
// headers; other origins get nothing that lets a browser read.
func TestCORS(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2}, func(c *envConfig) {
		c.CORS = gateway.CORS{AllowedOrigins: []string{"http://localhost:*", "https://*.example.com", "https://app.test"}}
	})
	preflight := func(origin string) *http.Response {
		req, _ := http.NewRequest("OPTIONS", e.gw.URL+"/v1/chat/completions", nil)
		req.Header.Set("Origin", origin)
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type, x-stainless-os, x-stainless-retry-count, anthropic-version, anthropic-dangerous-direct-browser-access, x-evil")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	for _, origin := range []string{"http://localhost:5173", "http://localhost", "https://a.example.com", "https://app.test"} {
		resp := preflight(origin)
		h := resp.Header
		allowed := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		if resp.StatusCode != 204 || h.Get("Access-Control-Allow-Origin") != origin || !strings.Contains(h.Get("Access-Control-Allow-Methods"), "POST") ||
			!strings.Contains(allowed, "authorization") || !strings.Contains(allowed, "x-stainless-retry-count") || strings.Contains(allowed, "x-evil") ||
			!strings.Contains(allowed, "anthropic-version") || !strings.Contains(allowed, "anthropic-dangerous-direct-browser-access") ||
			h.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("preflight from %s: %d %v", origin, resp.StatusCode, h)
		}
	}
	for _, origin := range []string{"http://evil.test", "https://example.com", "http://localhost.evil.test:80", "https://a.b/.example.com"} {
		if h := preflight(origin).Header; h.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("preflight from %s allowed: %v", origin, h)
		}
	}
	req, _ := http.NewRequest("POST", e.gw.URL+"/v1/chat", strings.NewReader(hi+`}`))
	req.Header.Set("Origin", "http://localhost:5173")
	req.Header.Set("Authorization", "Bearer "+keyAll)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	exposed := strings.ToLower(resp.Header.Get("Access-Control-Expose-Headers"))
	for _, h := range []string{"x-ratelimit-remaining-requests", "retry-after", "retry-after-ms", "x-should-retry", "x-request-id"} {
		if !strings.Contains(exposed, h) {
			t.Errorf("%s not exposed: %q", h, exposed)
		}
	}
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:5173" {
		t.Errorf("answer: %d %v", resp.StatusCode, resp.Header)
	}
}
