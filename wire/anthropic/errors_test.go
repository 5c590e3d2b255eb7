package anthropic

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/obol/obol/internal/apierr"
)

// TestErrorShapes: each code of the one vocabulary has Anthropic's type,
// and its status but 529 for overloaded; the body is Anthropic's shape
// with the request id, and a wait is sent as retry-after.
func TestErrorShapes(t *testing.T) {
	for code, want := range map[apierr.Code]struct {
		typ    string
		status int
	}{
		apierr.CodeBadRequest: {"invalid_request_error", 400}, apierr.CodeContextLength: {"invalid_request_error", 400},
		apierr.CodeUnauthorized: {"authentication_error", 401}, apierr.CodeForbidden: {"permission_error", 403},
		apierr.CodeNotFound: {"not_found_error", 404}, apierr.CodeMethodNotAllowed: {"invalid_request_error", 405},
		apierr.CodeTooLarge: {"request_too_large", 413}, apierr.CodeRateLimit: {"rate_limit_error", 429},
		apierr.CodeInsufficientQuota: {"rate_limit_error", 429}, apierr.CodeServerError: {"api_error", 500},
		apierr.CodeUpstreamError: {"api_error", 502}, apierr.CodeOverloaded: {"overloaded_error", 529},
		apierr.CodeUpstreamTimeout: {"api_error", 504},
	} {
		w := httptest.NewRecorder()
		WriteError(w, &apierr.Error{Code: code, Message: "why", RetryAfter: 2 * time.Second}, "msg_1")
		var body struct {
			Type  string `json:"type"`
			Error struct {
				Type    string `json:"type"`
				Message string `json:"message"`
			} `json:"error"`
			RequestID string `json:"request_id"`
		}
		json.Unmarshal(w.Body.Bytes(), &body)
		if w.Code != want.status || body.Type != "error" || body.Error.Type != want.typ || body.Error.Message != "why" ||
			body.RequestID != "msg_1" || w.Header().Get("Retry-After") != "2" {
			t.Errorf("%s: %d %s %v", code, w.Code, w.Body, w.Header())
		}
	}
}

// TestRateHeaders: Anthropic's names, the reset as RFC 3339, none for a
// limit that is off.
func TestRateHeaders(t *testing.T) {
	h := http.Header{}
	reset := time.Date(2026, 12, 3, 10, 0, 30, 0, time.UTC)
	RateHeaders(h, &Window{Limit: 50, Remaining: -1, Reset: reset}, nil)
	if h.Get("anthropic-ratelimit-requests-limit") != "50" || h.Get("anthropic-ratelimit-requests-remaining") != "0" ||
		h.Get("anthropic-ratelimit-requests-reset") != "2026-12-03T10:00:30Z" || h.Get("anthropic-ratelimit-tokens-limit") != "" {
		t.Errorf("headers %v", h)
	}
}

// FuzzTranslate: whatever the body, Translate answers a 400 naming the
// fault or a Chat Completions request whose body is a JSON object with
// messages; it never panics.
func FuzzTranslate(f *testing.F) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add([]byte(`{"model":"m","max_tokens":1,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"x","content":[{"type":"image","source":{"type":"url","url":"u"}}]}]}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		_, req, err := Translate(body)
		if err != nil {
			var e *apierr.Error
			if !errors.As(err, &e) || e.Status() != 400 {
				t.Fatalf("%q: %v", body, err)
			}
			return
		}
		var sent struct {
			Messages []json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(req.UpstreamBody(true), &sent); err != nil || len(sent.Messages) == 0 {
			t.Fatalf("%q: upstream body %s: %v", body, req.UpstreamBody(true), err)
		}
	})
}
