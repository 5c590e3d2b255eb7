// Package admin is the admin-token API — keys, projects, usage for
// billing, budget alerts, backends, OpenAI's organization usage and costs
// reports — and the dashboard's routes. It exposes routes for the
// gateway to serve on its public or its admin listener; it imports
// neither the gateway nor the quota store.
package admin

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
)

// Handler answers an API route; an error it returns is the answer, which
// the router's wrapper writes (apierr.Write) and logs.
type Handler func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error

// Route is a route to mount: an API route (Handle, its request ids
// starting with IDPrefix) or a page or file served as it is (Page).
type Route struct {
	Method, Path string
	IDPrefix     string
	Handle       Handler
	Page         httprouter.Handle
}

// Authenticator finds the identity an API key belongs to (nil for none);
// an error means it could not tell.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*keys.Identity, error)
}

// Options configure the admin API. Tokens open it; without one, or
// without Keys, every admin route answers 403.
type Options struct {
	Tokens   *keys.AdminTokens
	Keys     KeyAdmin
	Projects ProjectAdmin // nil: the projects routes answer 501
	Usage    UsageAdmin   // nil: the usage routes answer 501
	Alerts   AlertAdmin   // nil: the alerts routes answer 501
	Backends BackendAdmin // nil: the backends routes answer 501
	Catalog  *models.Catalog
	// Auth authenticates the API keys the dashboard's sign-in is given.
	Auth Authenticator
	// Failed answers a credential that failed (a wrong admin token, an
	// unknown key): the caller's failed-authentication guard counts it
	// and may answer 429 instead; nil answers e as it is.
	Failed func(r *http.Request, e *apierr.Error) *apierr.Error
	// AdminAddr is where the admin listener is, for the messages that
	// send a person there.
	AdminAddr string
	// MaxBodyBytes bounds a request body (at most 64 KiB is read).
	MaxBodyBytes int64
	Log          *slog.Logger
	// Reloader re-reads the gateway's configuration (POST
	// /v1/admin/reload); nil: the route answers 501.
	Reloader Reloader
}

// Reloader re-reads the gateway's configuration; by names who asked. ok
// is false when the configuration was refused and nothing changed.
type Reloader interface {
	Reload(ctx context.Context, by string) (report any, ok bool)
}

// API is the admin API.
type API struct {
	tokens    atomic.Pointer[keys.AdminTokens]
	keys      KeyAdmin
	projects  ProjectAdmin
	usage     UsageAdmin
	alerts    AlertAdmin
	backends  BackendAdmin
	catalog   atomic.Pointer[models.Catalog]
	auth      Authenticator
	failedFn  func(r *http.Request, e *apierr.Error) *apierr.Error
	adminAddr string
	maxBody   int64
	log       *slog.Logger
	reloader  Reloader
}

// New returns the admin API.
func New(o Options) *API {
	a := &API{keys: o.Keys, projects: o.Projects, usage: o.Usage, alerts: o.Alerts,
		backends: o.Backends, auth: o.Auth, failedFn: o.Failed, adminAddr: o.AdminAddr,
		maxBody: o.MaxBodyBytes, log: o.Log, reloader: o.Reloader}
	a.SetTokens(o.Tokens)
	a.catalog.Store(o.Catalog)
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.maxBody <= 0 {
		a.maxBody = 64 << 10
	}
	return a
}

func (a *API) failed(r *http.Request, e *apierr.Error) *apierr.Error {
	if a.failedFn == nil {
		return e
	}
	return a.failedFn(r, e)
}

// SetCatalog replaces the models the backends routes list (a reload).
func (a *API) SetCatalog(c *models.Catalog) { a.catalog.Store(c) }

// SetTokens replaces the admin tokens (a reload): requests from the next
// on are checked against them.
func (a *API) SetTokens(t *keys.AdminTokens) {
	if t == nil {
		t = keys.NewAdminTokens()
	}
	a.tokens.Store(t)
}

// Principal is who an admin request came from: the admin token's name.
// The caller puts one in the request's context (WithPrincipal) to read
// it back for its access log.
type Principal struct{ Token string }

type principalKey struct{}

// WithPrincipal is ctx carrying p, which guarded fills in.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// matchToken is the name of the admin token r carries, if it carries one.
func (a *API) matchToken(r *http.Request) (string, bool) {
	tok := httpapi.Credential(r)
	if tok == "" {
		return "", false
	}
	return a.tokens.Load().Match(tok)
}

// guarded opens h to the admin tokens, and to nothing else: an API key is
// refused whatever its scopes, so that a leaked key cannot make itself
// more keys. A change (any method but GET and HEAD) is written to the log
// as an audit record naming the token.
func (a *API) guarded(h Handler) Handler {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
		if !a.tokens.Load().Set() || a.keys == nil {
			return &apierr.Error{Code: apierr.CodeForbidden,
				Message: "the admin API is off: start the gateway with OBOL_ADMIN_TOKEN (or OBOL_ADMIN_TOKENS) set"}
		}
		tok := httpapi.Credential(r)
		if tok == "" {
			return &apierr.Error{Code: apierr.CodeUnauthorized, Message: "missing admin token: send Authorization: Bearer <OBOL_ADMIN_TOKEN>"}
		}
		name, ok := a.tokens.Load().Match(tok)
		if !ok {
			msg := "invalid admin token"
			if strings.HasPrefix(tok, "sk-") {
				msg = "admin routes take the admin token, not an API key"
			}
			return a.failed(r, &apierr.Error{Code: apierr.CodeUnauthorized, Message: msg})
		}
		if p, _ := r.Context().Value(principalKey{}).(*Principal); p != nil {
			p.Token = name
		}
		err := h(w, r, ps)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			outcome := "ok"
			var e *apierr.Error
			switch {
			case errors.As(err, &e):
				outcome = string(e.Code)
			case err != nil:
				outcome = "error"
			}
			a.log.Info("admin audit", "admin_token", name, "method", r.Method, "path", r.URL.Path, "outcome", outcome)
		}
		return err
	}
}

// Routes are the admin API's routes, each behind the admin token: keys,
// projects, alerts, usage, backends, OpenAI's organization usage and
// costs reports, and Anthropic's usage and cost reports.
func (a *API) Routes() []Route {
	var rs []Route
	add := func(method, path string, h Handler) {
		rs = append(rs, Route{Method: method, Path: path, IDPrefix: "adm", Handle: a.guarded(h)})
	}
	for _, p := range []string{"/v1/admin", "/api/v1/admin"} {
		add("POST", p+"/keys", a.createKey)
		add("GET", p+"/keys", a.listKeys)
		add("GET", p+"/keys/:id", a.getKey)
		add("PATCH", p+"/keys/:id", a.updateKey)
		add("DELETE", p+"/keys/:id", a.revokeKey)
		for _, rt := range []struct {
			method, path string
			h            Handler
		}{
			{"POST", "/projects", a.createProject}, {"GET", "/projects", a.listProjects},
			{"GET", "/projects/:id", a.getProject}, {"PATCH", "/projects/:id", a.updateProject},
			{"DELETE", "/projects/:id", a.deleteProject},
		} {
			add(rt.method, p+rt.path, a.withProjects(rt.h))
		}
		add("GET", p+"/alerts", a.listAlerts)
		add("POST", p+"/alerts/:id/redeliver", a.redeliverAlert)
		add("GET", p+"/usage", a.adminUsage)
		add("GET", p+"/requests", a.requests)
		add("GET", p+"/requests/stats", a.requestStats)
		add("GET", p+"/backends", a.listBackends)
		add("POST", p+"/backends/*rest", a.resetBackend)
		add("POST", p+"/reload", a.reload)
	}
	for _, p := range []string{"/v1/organization", "/api/v1/organization"} {
		add("GET", p+"/usage/completions", a.organization(completionsReport))
		add("GET", p+"/usage/embeddings", a.organization(embeddingsReport))
		add("GET", p+"/costs", a.organization(costsReport))
	}
	for _, p := range []string{"/v1/organizations", "/api/v1/organizations"} { // Anthropic's Admin API
		add("GET", p+"/usage_report/messages", a.claudeReport(messagesUsageReport))
		add("GET", p+"/cost_report", a.claudeReport(costReport))
	}
	return rs
}

// reload is POST /v1/admin/reload: the configuration file read again,
// and what it changed (200), or why it was refused, nothing changed (400).
func (a *API) reload(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if a.reloader == nil {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this gateway cannot reload its configuration"}
	}
	name, _ := a.matchToken(r)
	rep, ok := a.reloader.Reload(r.Context(), "admin:"+name)
	status := http.StatusOK
	if !ok {
		status = http.StatusBadRequest
	}
	return httpapi.WriteJSON(w, status, rep)
}
