package gateway

import (
	"context"
	"errors"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/admin"
	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/usage"
)

// getUsage is GET /v1/usage: the calling key's ledger for one UTC month,
// ?period=YYYY-MM, by default the current one, with its cost; ?by=day
// adds each UTC day that has usage. It shows what the store holds; a
// record still queued (during a store outage) appears once written.
func (s *Server) getUsage(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	if err := s.authenticate(r, c, keys.ScopeUsage, "GET /v1/usage"); err != nil {
		return err
	}
	period, err := httpapi.Period(r)
	if err != nil {
		return err
	}
	byDay, err := byParam(r)
	if err != nil {
		return err
	}
	s.peekHeaders(w, r, c)
	sum, err := s.ledger.Summary(r.Context(), c.key.ID, period)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return apierr.Unavailable("usage cannot be read", err)
	}
	if !byDay {
		sum.Days = nil
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpapi.WriteJSON(w, http.StatusOK, sum)
}

// byParam reads ?by=day (the only grouping: the month's days).
func byParam(r *http.Request) (byDay bool, err error) {
	switch r.URL.Query().Get("by") {
	case "":
		return false, nil
	case "day":
		return true, nil
	}
	return false, apierr.BadRequest("by", "by must be day (or left out)")
}

// getRequests is GET /v1/requests: the calling key's own request log,
// newest first, filtered as the admin's is (but for key).
func (s *Server) getRequests(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	if err := s.authenticate(r, c, keys.ScopeUsage, "GET /v1/requests"); err != nil {
		return err
	}
	rl, ok := s.ledger.(admin.RequestLog)
	if !ok {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger keeps no request log"}
	}
	v := r.URL.Query()
	if v.Has("key") {
		return apierr.BadRequest("key", "GET /v1/requests is the calling key's own: key is not a parameter here")
	}
	q, asCSV, err := usage.ParseRequestQuery(v)
	if err != nil {
		return admin.QueryError(err)
	}
	q.Key = c.key.ID
	page, next, err := rl.Requests(r.Context(), q)
	if err != nil {
		return admin.RequestLogError(err)
	}
	for i := range page {
		page[i].KeyName = c.key.Name
	}
	s.peekHeaders(w, r, c)
	return admin.WriteRequests(w, page, next, asCSV)
}
