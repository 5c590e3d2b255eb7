package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/obol/obol/models"
)

// Error is an answer other than 2xx. Handlers return it; writeError alone
// turns it into a status, headers and DESIGN.md's JSON body.
type Error struct {
	Status  int
	Code    string // DESIGN.md's code: bad_request, unauthorized, …
	Message string // safe to show the client
	Param   string // the offending request field, if one is to blame
	// RetryAfter, when positive, is sent as Retry-After and retry-after-ms
	// (and as retryAfter in a 429 body).
	RetryAfter time.Duration
	// NoRetry marks an answer that retrying cannot change (x-should-retry:
	// false, which OpenAI's SDKs obey).
	NoRetry bool
	// Err is the cause, logged and never sent.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Code + ": " + e.Message + ": " + e.Err.Error()
	}
	return e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

// errorType is the OpenAI error type the SDKs expect for a status.
func errorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusTooManyRequests:
		return "rate_limit_exceeded"
	}
	if status >= 500 {
		return "server_error"
	}
	return "invalid_request_error"
}

func badRequest(param, msg string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "bad_request", Param: param, Message: msg}
}

var (
	errNotFound = &Error{Status: http.StatusNotFound, Code: "not_found", Message: "no such route; see /v1/models and the API reference"}
	errNoKey    = &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "missing API key: send Authorization: Bearer sk-… or X-Api-Key"}
	errBadKey   = &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Message: "invalid API key"}
)

// errorBody is DESIGN.md's error shape. "error" must be the first key:
// go-openai recognises a stream error event by the prefix `data: {"error":`.
type errorBody struct {
	Error struct {
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
	} `json:"error"`
	// RetryAfter is the 429's wait in seconds; absent when no wait helps.
	RetryAfter *int64 `json:"retryAfter,omitempty"`
}

func (e *Error) body() []byte {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Type = e.Code, e.Message, errorType(e.Status)
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Status == http.StatusTooManyRequests && e.RetryAfter > 0 {
		secs := retrySeconds(e.RetryAfter)
		b.RetryAfter = &secs
	}
	out, _ := json.Marshal(b)
	return out
}

// retrySeconds rounds up, so that a client waiting that long gets in.
func retrySeconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }

// asError turns any handler error into an *Error, mapping upstream failures
// to DESIGN.md's statuses; anything unforeseen is a 500 whose details are
// only logged.
func asError(err error, model string) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ue *models.UpstreamError
	var ce *models.ConnectError
	var ua *models.UnavailableError
	switch {
	case errors.As(err, &ue):
		switch {
		case ue.Status == http.StatusTooManyRequests || ue.Status == http.StatusServiceUnavailable:
			ra := ue.RetryAfter
			if ra <= 0 {
				ra = time.Second
			}
			return &Error{Status: http.StatusServiceUnavailable, Code: "overloaded", RetryAfter: ra, Err: err,
				Message: "the backends for " + model + " are saturated; retry shortly"}
		case ue.Status == http.StatusBadRequest || ue.Status == http.StatusUnprocessableEntity:
			// The backend refused the request itself: the client's to fix.
			return &Error{Status: http.StatusBadRequest, Code: "bad_request", Err: err,
				Message: "the model refused the request" + suffix(ue.Message)}
		}
		return &Error{Status: http.StatusBadGateway, Code: "upstream_error", Err: err,
			Message: "the backend for " + model + " failed to answer"}
	case errors.As(err, &ce):
		return &Error{Status: http.StatusBadGateway, Code: "upstream_error", Err: err,
			Message: "no backend for " + model + " could be reached"}
	case errors.As(err, &ua):
		return &Error{Status: http.StatusServiceUnavailable, Code: "overloaded", RetryAfter: ua.RetryAfter, Err: err,
			Message: "every backend for " + model + " is busy or recovering; retry shortly"}
	case errors.Is(err, models.ErrBadFirstEvent), errors.Is(err, models.ErrAnswerCut):
		return &Error{Status: http.StatusBadGateway, Code: "upstream_error", Err: err,
			Message: "the backend for " + model + " failed to answer"}
	case errors.Is(err, models.ErrFirstTokenTimeout), errors.Is(err, models.ErrTotalTimeout):
		return &Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Err: err,
			Message: "no answer from " + model + " in time"}
	case errors.Is(err, models.ErrIdleTimeout):
		return &Error{Status: http.StatusGatewayTimeout, Code: "upstream_timeout", Err: err,
			Message: "the stream from " + model + " stalled"}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &Error{Status: 499, Code: "client_closed", Message: "client closed the request", Err: err}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "server_error", Err: err,
		Message: "internal error; it has been logged"}
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// writeError answers with e. It is the only place errors become responses.
func writeError(w http.ResponseWriter, e *Error) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(retrySeconds(e.RetryAfter), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(e.RetryAfter.Milliseconds(), 10))
	}
	if e.NoRetry {
		h.Set("X-Should-Retry", "false")
	}
	status := e.Status
	if status == 499 {
		status = http.StatusBadRequest // not a real status; the client is gone anyway
	}
	w.WriteHeader(status)
	w.Write(e.body())
}

// logError logs what the client was not told.
func logError(log *slog.Logger, reqID string, e *Error) {
	if e.Err == nil || e.Status == 499 {
		return
	}
	level := slog.LevelWarn
	if e.Status >= 500 {
		level = slog.LevelError
	}
	log.Log(context.Background(), level, "request failed", "request_id", reqID, "code", e.Code, "err", e.Err)
}

// errShuttingDown answers requests cut by the end of the shutdown grace.
var errShuttingDown = &Error{Status: http.StatusServiceUnavailable, Code: "overloaded", RetryAfter: time.Second,
	Message: "the gateway is shutting down; retry the request"}
