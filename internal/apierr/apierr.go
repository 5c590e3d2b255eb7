// Package apierr is the one vocabulary of the API's errors — codes, their
// statuses and OpenAI types, the JSON error body — shared by the
// gateway, the admin API and the wire formats.
package apierr

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"time"
)

// Code is an error code of the one vocabulary of the API's errors (docs/api.md); each has one status.
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

// Error is an answer other than 2xx. Handlers return it; Write alone
// turns it into a status, headers and the JSON body.
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

// Unavailable is the 503 for a store that cannot answer now: what cannot
// be done (e.g. "keys cannot be checked") and why, for the log.
func Unavailable(what string, err error) *Error {
	return &Error{Code: CodeOverloaded, RetryAfter: time.Second, Message: what + " right now; retry shortly", Err: err}
}

func (e *Error) Unwrap() error { return e.Err }

// Type is the OpenAI error type the SDKs expect for an error of code.
func Type(code Code, status int) string {
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

// BadRequest is a 400 naming the request field at fault.
func BadRequest(param, msg string) *Error {
	return &Error{Code: CodeBadRequest, Param: param, Message: msg}
}

// The answers of a route that does not exist, and of a request with no
// credential or one that is not a key.
var (
	NoRoute = &Error{Code: CodeNotFound, Message: "no such route; see /v1/models and the API reference"}
	NoKey   = &Error{Code: CodeUnauthorized, Message: "missing API key: send Authorization: Bearer sk-… or X-Api-Key"}
	BadKey  = &Error{Code: CodeUnauthorized, Message: "invalid API key"}
)

// errorBody is the API's error shape. "error" must be the first key:
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

// Body is the error as the JSON the API answers with.
func (e *Error) Body() []byte {
	var b errorBody
	b.Error.Code, b.Error.Message, b.Error.Type = string(e.Code), e.Message, Type(e.Code, e.Status())
	if e.Param != "" {
		b.Error.Param = &e.Param
	}
	if e.Code == CodeRateLimit && e.RetryAfter > 0 {
		secs := RetrySeconds(e.RetryAfter)
		b.RetryAfter = &secs
	}
	out, _ := json.Marshal(b)
	return out
}

// RetrySeconds rounds up, so that a client waiting that long gets in.
func RetrySeconds(d time.Duration) int64 { return int64(math.Ceil(d.Seconds())) }

// Write answers with e in OpenAI's shape.
func Write(w http.ResponseWriter, e *Error) {
	WriteAs(w, e, e.Status(), e.Body())
}

// WriteAs answers with e as status and body, a wire format's own shape of
// it: the headers every shape shares (Retry-After, X-Should-Retry, …) are
// written here, so an error becomes a response in one place.
func WriteAs(w http.ResponseWriter, e *Error, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.FormatInt(RetrySeconds(e.RetryAfter), 10))
		h.Set("Retry-After-Ms", strconv.FormatInt(e.RetryAfter.Milliseconds(), 10))
	}
	if e.NoRetry {
		h.Set("X-Should-Retry", "false")
	}
	if e.Code == CodeRequestTimeout {
		h.Set("Connection", "close") // what is left of the body is not read
	}
	if status == StatusClientClosed {
		status = http.StatusBadRequest // not a real status; the client is gone anyway
	}
	w.WriteHeader(status)
	w.Write(body)
}
