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

// Code is an error code of DESIGN.md's vocabulary; each has one status.
type Code string

// The error codes.
const (
	CodeBadRequest       Code = "bad_request"
	CodeContextLength    Code = "context_length_exceeded"
	CodeUnauthorized     Code = "unauthorized"
	CodeForbidden        Code = "forbidden"
	CodeNotFound         Code = "not_found"
	CodeMethodNotAllowed Code = "method_not_allowed"
	CodeConflict         Code = "conflict"
	CodeRequestTimeout   Code = "request_timeout"
	CodeTooLarge         Code = "request_too_large"
	CodeRateLimit        Code = "rate_limit"
	// CodeInsufficientQuota is OpenAI's code for a spent balance: here a
	// monthly budget spent.
	CodeInsufficientQuota Code = "insufficient_quota"
	CodeClientClosed      Code = "client_closed"
	CodeServerError       Code = "server_error"
	CodeNotImplemented    Code = "not_implemented"
	CodeUpstreamError     Code = "upstream_error"
	CodeOverloaded        Code = "overloaded"
	CodeUpstreamTimeout   Code = "upstream_timeout"
)

// StatusClientClosed is the status of a request whose client left before
// its answer (nginx's 499): logged and counted, never sent.
const StatusClientClosed = 499

// Status is the code's HTTP status.
func (c Code) Status() int {
	switch c {
	case CodeBadRequest, CodeContextLength:
		return http.StatusBadRequest
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	case CodeNotFound:
		return http.StatusNotFound
	case CodeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	case CodeConflict:
		return http.StatusConflict
	case CodeRequestTimeout:
		return http.StatusRequestTimeout
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeRateLimit, CodeInsufficientQuota:
		return http.StatusTooManyRequests
	case CodeClientClosed:
		return StatusClientClosed
	case CodeNotImplemented:
		return http.StatusNotImplemented
	case CodeUpstreamError:
		return http.StatusBadGateway
	case CodeOverloaded:
		return http.StatusServiceUnavailable
	case CodeUpstreamTimeout:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// Error is an answer other than 2xx. Handlers return it; writeError alone
// turns it into a status, headers and DESIGN.md's JSON body.
type Error struct {
	Code    Code
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
		return string(e.Code) + ": " + e.Message + ": " + e.Err.Error()
	}
	return string(e.Code) + ": " + e.Message
}

// Status is the answer's HTTP status.
func (e *Error) Status() int { return e.Code.Status() }

// unavailable is the 503 for a store that cannot answer now: what cannot
// be done (e.g. "keys cannot be checked") and why, for the log.
func unavailable(what string, err error) *Error {
	return &Error{Code: CodeOverloaded, RetryAfter: time.Second, Message: what + " right now; retry shortly", Err: err}
}

func (e *Error) Unwrap() error { return e.Err }

// errorType is the OpenAI error type the SDKs expect for an error.
func errorType(code Code, status int) string {
	if code == CodeInsufficientQuota {
		return "insufficient_quota"
	}
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
	return &Error{Code: CodeBadRequest, Param: param, Message: msg}
}

var (
	errNotFound = &Error{Code: CodeNotFound, Message: "no such route; see /v1/models and the API reference"}
	errNoKey    = &Error{Code: CodeUnauthorized, Message: "missing API key: send Authorization: Bearer sk-… or X-Api-Key"}
	errBadKey   = &Error{Code: CodeUnauthorized, Message: "invalid API key"}
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
	b.Error.Code, b.Error.Message, b.Error.Type = string(e.Code), e.Message, errorType(e.Code, e.Status())
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code == CodeRateLimit && e.RetryAfter > 0 {
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
			return &Error{Code: CodeOverloaded, RetryAfter: ra, Err: err,
				Message: "the backends for " + model + " are saturated; retry shortly"}
		case ue.Status == http.StatusBadRequest || ue.Status == http.StatusUnprocessableEntity:
			// The backend refused the request itself: the client's to fix.
			return &Error{Code: CodeBadRequest, Err: err,
				Message: "the model refused the request" + suffix(ue.Message)}
		}
		return &Error{Code: CodeUpstreamError, Err: err,
			Message: "the backend for " + model + " failed to answer"}
	case errors.As(err, &ce):
		return &Error{Code: CodeUpstreamError, Err: err,
			Message: "no backend for " + model + " could be reached"}
	case errors.As(err, &ua):
		return &Error{Code: CodeOverloaded, RetryAfter: ua.RetryAfter, Err: err,
			Message: "every backend for " + model + " is busy or recovering; retry shortly"}
	case errors.Is(err, models.ErrBadFirstEvent), errors.Is(err, models.ErrAnswerCut):
		return &Error{Code: CodeUpstreamError, Err: err,
			Message: "the backend for " + model + " failed to answer"}
	case errors.Is(err, models.ErrFirstTokenTimeout), errors.Is(err, models.ErrTotalTimeout):
		return &Error{Code: CodeUpstreamTimeout, Err: err,
			Message: "no answer from " + model + " in time"}
	case errors.Is(err, models.ErrIdleTimeout):
		return &Error{Code: CodeUpstreamTimeout, Err: err,
			Message: "the stream from " + model + " stalled"}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &Error{Code: CodeClientClosed, Message: "client closed the request", Err: err}
	case errors.Is(err, errBrokenStream):
		return &Error{Code: CodeUpstreamError, Err: err, Message: "the backend for " + model + " failed mid-stream"}
	}
	return &Error{Code: CodeServerError, Err: err,
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
	if e.Code == CodeRequestTimeout {
		h.Set("Connection", "close") // what is left of the body is not read
	}
	status := e.Status()
	if status == StatusClientClosed {
		status = http.StatusBadRequest // not a real status; the client is gone anyway
	}
	w.WriteHeader(status)
	w.Write(e.body())
}

// logError logs what the client was not told.
func logError(log *slog.Logger, reqID string, e *Error) {
	if e.Err == nil || e.Code == CodeClientClosed {
		return
	}
	level := slog.LevelWarn
	if e.Status() >= 500 {
		level = slog.LevelError
	}
	log.Log(context.Background(), level, "request failed", "request_id", reqID, "code", e.Code, "err", e.Err)
}

// errShuttingDown answers requests cut by the end of the shutdown grace.
var errShuttingDown = &Error{Code: CodeOverloaded, RetryAfter: time.Second,
	Message: "the gateway is shutting down; retry the request"}
