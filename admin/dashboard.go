package admin

import (
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/dashboard"
	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
)

// Dashboard is the usage and billing page's routes: /dashboard, its
// files under /dashboard/assets/, and /dashboard/session, which tells the
// page what the credential its user typed opens. adminView is whether the
// admin view is served there (the admin API is on the same listener).
func (a *API) Dashboard(adminView bool) []Route {
	return []Route{
		{Method: "GET", Path: "/dashboard", Page: a.dashboardPage},
		{Method: "GET", Path: "/dashboard/", Page: a.dashboardPage},
		{Method: "GET", Path: "/dashboard/assets/:file", Page: a.dashboardAsset},
		{Method: "GET", Path: "/dashboard/session", IDPrefix: "req", Handle: func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
			return a.dashboardSession(w, r, adminView)
		}},
	}
}

// pageHeaders are a page's: its CSP, and no sniffing, referrer or framing.
func pageHeaders(h http.Header, contentType string) {
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", dashboard.CSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cache-Control", "no-cache")
}

func (a *API) dashboardPage(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	pageHeaders(w.Header(), "text/html; charset=utf-8")
	w.Write(dashboard.Page())
}

func (a *API) dashboardAsset(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	b, ct, ok := dashboard.Asset(ps.ByName("file"))
	if !ok {
		apierr.Write(w, apierr.NoRoute)
		return
	}
	pageHeaders(w.Header(), ct)
	w.Write(b)
}

// dashboardSession is GET /dashboard/session: {"kind":"admin"} for the
// admin token where the admin view is served (elsewhere a 403 saying
// where it is), {"kind":"key","id"} for an API key, else the
// authentication error (the failed-auth guard counts it).
func (a *API) dashboardSession(w http.ResponseWriter, r *http.Request, adminView bool) error {
	w.Header().Set("Cache-Control", "no-store")
	tok := httpapi.Credential(r)
	if _, ok := a.matchToken(r); ok {
		if !adminView {
			return &apierr.Error{Code: apierr.CodeForbidden, Message: "the admin view is served on the admin listener, not here: open /dashboard at " +
				a.adminAddr + " (admin_listen) and sign in there with the admin token"}
		}
		return httpapi.WriteJSON(w, http.StatusOK, map[string]any{"kind": "admin", "alerts": a.alerts != nil})
	}
	if tok == "" {
		return apierr.NoKey
	}
	id, err := a.auth.Authenticate(r.Context(), tok)
	switch {
	case err != nil:
		return apierr.Unavailable("keys cannot be checked", fmt.Errorf("authenticate: %w", err))
	case id == nil:
		return a.failed(r, apierr.BadKey)
	}
	return httpapi.WriteJSON(w, http.StatusOK, map[string]string{"kind": "key", "id": id.ID})
}
