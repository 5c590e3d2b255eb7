package gateway

import (
	"net/http"
	"strings"

	"github.com/obol/obol/internal/crockford"
)

// CORS lets web pages of other origins call the gateway. Credentials are
// API keys in headers, never cookies, so no answer allows credentials.
type CORS struct {
	// AllowedOrigins are exact origins ("https://app.example.com") or
	// patterns with one "*": a port ("http://localhost:*", which also
	// matches no port), a subdomain ("https://*.example.com"), or "*" for
	// any origin. None: no cross-origin access.
	AllowedOrigins []string
}

func (c CORS) allows(origin string) bool {
	for _, p := range c.AllowedOrigins {
		if p == "*" || p == origin {
			return true
		}
		pre, suf, ok := strings.Cut(p, "*")
		if !ok {
			continue
		}
		if suf == "" && strings.HasSuffix(pre, ":") && origin == strings.TrimSuffix(pre, ":") {
			return true // "http://localhost:*" and no port
		}
		if mid, ok := strings.CutPrefix(origin, pre); ok {
			if mid, ok = strings.CutSuffix(mid, suf); ok && mid != "" && !strings.ContainsAny(mid, "/:") {
				return true
			}
		}
	}
	return false
}

// corsExposed are the answer's headers that browser code may read: the
// rate-limit headers, the retry hints and the request id.
const corsExposed = "X-Request-Id, X-Ratelimit-Limit-Requests, X-Ratelimit-Limit-Tokens, " +
	"X-Ratelimit-Remaining-Requests, X-Ratelimit-Remaining-Tokens, X-Ratelimit-Reset-Requests, " +
	"X-Ratelimit-Reset-Tokens, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, " +
	"Retry-After, Retry-After-Ms, X-Should-Retry, X-Obol-Cost, Request-Id, " +
	"Anthropic-Ratelimit-Requests-Limit, Anthropic-Ratelimit-Requests-Remaining, Anthropic-Ratelimit-Requests-Reset, " +
	"Anthropic-Ratelimit-Tokens-Limit, Anthropic-Ratelimit-Tokens-Remaining, Anthropic-Ratelimit-Tokens-Reset"

// corsAllowedHeader reports whether a browser may send header: the
// credentials' headers, Content-Type, tracing, and the OpenAI and
// Anthropic SDKs' own.
func corsAllowedHeader(h string) bool {
	h = strings.ToLower(strings.TrimSpace(h))
	switch h {
	case "authorization", "x-api-key", "content-type", "accept", "traceparent", "tracestate",
		"openai-organization", "openai-project", "openai-beta", "idempotency-key", "x-request-id":
		return true
	}
	return strings.HasPrefix(h, "x-stainless-") || strings.HasPrefix(h, "anthropic-")
}

// cors answers a request from another origin: it allows an allowed one,
// and answers its preflight itself, without a key. It reports whether the
// request was answered.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || len(s.live.Load().CORS.AllowedOrigins) == 0 {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.live.Load().CORS.allows(origin) {
		return false // the browser refuses the answer; a preflight gets the plain OPTIONS answer
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		h.Set("Access-Control-Expose-Headers", corsExposed)
		return false
	}
	var allowed []string
	for _, name := range strings.Split(r.Header.Get("Access-Control-Request-Headers"), ",") {
		if corsAllowedHeader(name) {
			allowed = append(allowed, strings.TrimSpace(name))
		}
	}
	h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
	h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST, PATCH, DELETE")
	if len(allowed) > 0 {
		h.Set("Access-Control-Allow-Headers", strings.Join(allowed, ", "))
	}
	h.Set("Access-Control-Max-Age", "600")
	h.Set("X-Request-Id", crockford.NewID("req"))
	w.WriteHeader(http.StatusNoContent)
	return true
}
