package anthropic

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/obol/obol/internal/apierr"
)

// StatusOverloaded is Anthropic's status for an overloaded service, where
// OpenAI's routes say 503.
const StatusOverloaded = 529

// errorBody is Anthropic's error shape.
type errorBody struct {
	Type  string `json:"type"`
	Error struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

// ErrorType is the Anthropic error type of an error of the one vocabulary.
func ErrorType(code apierr.Code) string {
	switch code {
	case apierr.CodeUnauthorized:
		return "authentication_error"
	case apierr.CodeForbidden:
		return "permission_error"
	case apierr.CodeNotFound:
		return "not_found_error"
	case apierr.CodeTooLarge:
		return "request_too_large"
	case apierr.CodeRateLimit, apierr.CodeInsufficientQuota:
		return "rate_limit_error"
	case apierr.CodeOverloaded:
		return "overloaded_error"
	}
	if code.Status() >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}

// Status is e's status on Anthropic's routes: 529 for overloaded.
func Status(e *apierr.Error) int {
	if e.Code == apierr.CodeOverloaded {
		return StatusOverloaded
	}
	return e.Status()
}

// ErrorBody is e in Anthropic's shape.
func ErrorBody(e *apierr.Error, requestID string) any {
	var b errorBody
	b.Type, b.Error.Type, b.Error.Message, b.RequestID = "error", ErrorType(e.Code), e.Message, requestID
	return b
}

// WriteError answers with e in Anthropic's shape.
func WriteError(w http.ResponseWriter, e *apierr.Error, requestID string) {
	body, _ := json.Marshal(ErrorBody(e, requestID))
	apierr.WriteAs(w, e, Status(e), body)
}

// Window is one limit's state for the rate-limit headers.
type Window struct {
	Limit, Remaining int64
	Reset            time.Time
}

// RateHeaders sets Anthropic's rate-limit headers: requests and tokens
// (nil: that limit is off), each reset as RFC 3339.
func RateHeaders(h http.Header, requests, tokens *Window) {
	for _, l := range []struct {
		name string
		w    *Window
	}{{"requests", requests}, {"tokens", tokens}} {
		if l.w == nil {
			continue
		}
		prefix := "Anthropic-Ratelimit-" + http.CanonicalHeaderKey(l.name)
		h[prefix+"-Limit"] = []string{strconv.FormatInt(l.w.Limit, 10)}
		h[prefix+"-Remaining"] = []string{strconv.FormatInt(max(l.w.Remaining, 0), 10)}
		h[prefix+"-Reset"] = []string{l.w.Reset.UTC().Format(time.RFC3339)}
	}
}
