package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/usage"
)

// RequestLog reads the request log (usage.Ledger).
type RequestLog interface {
	Requests(ctx context.Context, q usage.RequestQuery) ([]usage.RequestEntry, string, error)
}

// requests is GET /v1/admin/requests: every key's requests, newest
// first, filtered, with each key's name.
func (a *API) requests(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	rl, ok := a.usage.(RequestLog)
	if !ok || a.usage == nil {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger keeps no request log"}
	}
	q, asCSV, err := usage.ParseRequestQuery(r.URL.Query())
	if err != nil {
		return QueryError(err)
	}
	page, next, err := rl.Requests(r.Context(), q)
	if err != nil {
		return RequestLogError(err)
	}
	if names, err := a.keyNames(r); err == nil {
		for i := range page {
			page[i].KeyName = names[page[i].Key]
		}
	}
	return WriteRequests(w, page, next, asCSV)
}

// keyNames are every key's name by id.
func (a *API) keyNames(r *http.Request) (map[string]string, error) {
	list, err := a.keys.List(r.Context())
	if err != nil {
		return nil, err
	}
	names := make(map[string]string, len(list))
	for _, k := range list {
		names[k.ID] = k.Name
	}
	return names, nil
}

// QueryError is a request log parameter's error in the API's shape.
func QueryError(err error) error {
	var qe *usage.QueryError
	if errors.As(err, &qe) {
		return apierr.BadRequest(qe.Param, qe.Msg)
	}
	return err
}

// RequestLogError is a failed read of the request log in the API's shape.
func RequestLogError(err error) error {
	switch {
	case errors.Is(err, usage.ErrBadCursor):
		return apierr.BadRequest("cursor", "cursor must be a next_cursor this endpoint gave")
	case errors.Is(err, usage.ErrNoRequestLog):
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger keeps no request log (postgres.request_log_days or request_log.days is 0)"}
	case errors.Is(err, context.Canceled):
		return err
	}
	return apierr.Unavailable("the request log cannot be read", err)
}

// WriteRequests answers a page of the request log: JSON
// {object, data, has_more, next_cursor}, or CSV with X-Next-Cursor.
func WriteRequests(w http.ResponseWriter, page []usage.RequestEntry, next string, asCSV bool) error {
	w.Header().Set("Cache-Control", "no-store")
	if asCSV {
		w.Header().Set("Content-Type", "text/csv; charset=utf-8")
		w.Header().Set("Content-Disposition", `attachment; filename="obol-requests.csv"`)
		if next != "" {
			w.Header().Set("X-Next-Cursor", next)
		}
		return usage.WriteRequestsCSV(w, page)
	}
	if page == nil {
		page = []usage.RequestEntry{}
	}
	body := map[string]any{"object": "list", "data": page, "has_more": next != "", "next_cursor": nil}
	if next != "" {
		body["next_cursor"] = next
	}
	return httpapi.WriteJSON(w, http.StatusOK, body)
}

// RequestStatter sums the request log (usage.Ledger).
type RequestStatter interface {
	RequestStats(ctx context.Context, start, end time.Time, byBackend bool) ([]usage.RequestStats, error)
}

// requestStats is GET /v1/admin/requests/stats: per model (by=backend:
// per model and backend) over [start, end) (default the last 24 hours),
// the requests, the error rate (5xx) and time to first token and
// duration at p50 and p95.
func (a *API) requestStats(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	rs, ok := a.usage.(RequestStatter)
	if !ok {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger keeps no request log"}
	}
	v := r.URL.Query()
	for name := range v {
		if name != "start" && name != "end" && name != "by" {
			return apierr.BadRequest(name, "unknown parameter; request stats take start, end and by")
		}
	}
	q, _, err := usage.ParseRequestQuery(map[string][]string{"start": v["start"], "end": v["end"]})
	if err != nil {
		return QueryError(err)
	}
	if q.End.IsZero() {
		q.End = time.Now().UTC()
	}
	if q.Start.IsZero() {
		q.Start = q.End.Add(-24 * time.Hour)
	}
	by := v.Get("by")
	if by != "" && by != "model" && by != "backend" {
		return apierr.BadRequest("by", "by must be model or backend")
	}
	stats, err := rs.RequestStats(r.Context(), q.Start, q.End, by == "backend")
	if err != nil {
		return RequestLogError(err)
	}
	if stats == nil {
		stats = []usage.RequestStats{}
	}
	return httpapi.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "start": q.Start, "end": q.End, "data": stats})
}
