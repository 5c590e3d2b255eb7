package gateway

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

// asError turns any handler error into an *apierr.Error, mapping upstream failures
// to the API's statuses (docs/api.md); anything unforeseen is a 500 whose details are
// only logged.
func asError(err error, model string) *apierr.Error {
	var e *apierr.Error
	if errors.As(err, &e) {
		return e
	}
	var ue *models.UpstreamError
	var ce *models.ConnectError
	var ua *models.UnavailableError
	switch {
	case errors.As(err, &ue):
		switch {
		case ue.Status == http.StatusTooManyRequests || ue.Status == http.StatusServiceUnavailable || ue.Status == models.StatusOverloaded:
			ra := ue.RetryAfter
			if ra <= 0 {
				ra = time.Second
			}
			return &apierr.Error{Code: apierr.CodeOverloaded, RetryAfter: ra, Err: err,
				Message: "the backends for " + model + " are saturated; retry shortly"}
		case ue.Status == http.StatusBadRequest || ue.Status == http.StatusUnprocessableEntity:
			// The backend refused the request itself: the client's to fix.
			return &apierr.Error{Code: apierr.CodeBadRequest, Err: err,
				Message: "the model refused the request" + suffix(ue.Message)}
		}
		return &apierr.Error{Code: apierr.CodeUpstreamError, Err: err,
			Message: "the backend for " + model + " failed to answer"}
	case errors.As(err, &ce):
		return &apierr.Error{Code: apierr.CodeUpstreamError, Err: err,
			Message: "no backend for " + model + " could be reached"}
	case errors.As(err, &ua):
		return &apierr.Error{Code: apierr.CodeOverloaded, RetryAfter: ua.RetryAfter, Err: err,
			Message: "every backend for " + model + " is busy or recovering; retry shortly"}
	case errors.Is(err, models.ErrBadFirstEvent), errors.Is(err, models.ErrAnswerCut):
		return &apierr.Error{Code: apierr.CodeUpstreamError, Err: err,
			Message: "the backend for " + model + " failed to answer"}
	case errors.Is(err, models.ErrFirstTokenTimeout), errors.Is(err, models.ErrTotalTimeout):
		return &apierr.Error{Code: apierr.CodeUpstreamTimeout, Err: err,
			Message: "no answer from " + model + " in time"}
	case errors.Is(err, models.ErrIdleTimeout):
		return &apierr.Error{Code: apierr.CodeUpstreamTimeout, Err: err,
			Message: "the stream from " + model + " stalled"}
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this answer.
		return &apierr.Error{Code: apierr.CodeClientClosed, Message: "client closed the request", Err: err}
	case errors.Is(err, openai.ErrBrokenStream):
		return &apierr.Error{Code: apierr.CodeUpstreamError, Err: err, Message: "the backend for " + model + " failed mid-stream"}
	}
	return &apierr.Error{Code: apierr.CodeServerError, Err: err,
		Message: "internal error; it has been logged"}
}

func suffix(msg string) string {
	if msg == "" {
		return ""
	}
	return ": " + msg
}

// logError logs what the client was not told.
func logError(log *slog.Logger, reqID string, e *apierr.Error) {
	if e.Err == nil || e.Code == apierr.CodeClientClosed {
		return
	}
	level := slog.LevelWarn
	if e.Status() >= 500 {
		level = slog.LevelError
	}
	log.Log(context.Background(), level, "request failed", "request_id", reqID, "code", e.Code, "err", e.Err)
}

// errShuttingDown answers requests cut by the end of the shutdown grace.
var errShuttingDown = &apierr.Error{Code: apierr.CodeOverloaded, RetryAfter: time.Second,
	Message: "the gateway is shutting down; retry the request"}
