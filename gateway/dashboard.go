package gateway

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/dashboard"
	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
)

// dashboardRoutes serves the usage and billing page: /dashboard, its
// files under /dashboard/assets/, and /dashboard/session, which tells the
// page what the credential its user typed opens.
// adminView is whether the admin view is served there (the admin API
// is on the same listener).
func (s *Server) dashboardRoutes(r *httprouter.Router, adminView bool) {
	get(r, "/dashboard", s.dashboardPage)
	get(r, "/dashboard/", s.dashboardPage)
	get(r, "/dashboard/assets/:file", s.dashboardAsset)
	s.add(r, "GET", "/dashboard/session", "req", func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *call) error {
		return s.dashboardSession(w, r, c, adminView)
	})
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

func (s *Server) dashboardPage(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	pageHeaders(w.Header(), "text/html; charset=utf-8")
	w.Write(dashboard.Page())
}

func (s *Server) dashboardAsset(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
	b, ct, ok := dashboard.Asset(ps.ByName("file"))
	if !ok {
		apierr.Write(w, errNotFound)
		return
	}
	pageHeaders(w.Header(), ct)
	w.Write(b)
}

// dashboardSession is GET /dashboard/session: {"kind":"admin"} for the
// admin token where the admin view is served (elsewhere a 403 saying
// where it is), {"kind":"key","id"} for an API key, else the
// authentication error (the failed-auth guard counts it).
func (s *Server) dashboardSession(w http.ResponseWriter, r *http.Request, c *call, adminView bool) error {
	w.Header().Set("Cache-Control", "no-store")
	if tok := httpapi.Credential(r); tok != "" && s.adminToken.Set() && s.adminToken.Matches(tok) {
		if !adminView {
			return &apierr.Error{Code: apierr.CodeForbidden, Message: "the admin view is served on the admin listener, not here: open /dashboard at " +
				s.adminAddr + " (admin_listen) and sign in there with the admin token"}
		}
		return httpapi.WriteJSON(w, http.StatusOK, map[string]string{"kind": "admin"})
	}
	if err := s.authenticate(r, c, "", ""); err != nil {
		return err
	}
	return httpapi.WriteJSON(w, http.StatusOK, map[string]string{"kind": "key", "id": c.key.ID})
}
