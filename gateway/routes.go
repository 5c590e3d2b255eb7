package gateway

import (
	"fmt"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/admin"
	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/crockford"
)

// routes registers every route on the public router and the admin one.
func (s *Server) routes(o Options) {
	r := newRouter()
	for _, p := range []string{"/v1", "/api/v1"} {
		s.add(r, "POST", p+"/chat", "chat", s.chat)
		s.add(r, "POST", p+"/chat/stream", "chat", s.chatStream)
		s.add(r, "POST", p+"/chat/completions", "chat", s.chatCompletions)
		s.add(r, "POST", p+"/completions", "cmpl", s.completions)
		s.add(r, "POST", p+"/responses", "resp", s.responses)
		s.add(r, "POST", p+"/embeddings", "req", s.embeddings)
		s.add(r, "GET", p+"/models", "req", s.listModels)
		s.add(r, "GET", p+"/models/:model", "req", s.getModel)
		s.add(r, "GET", p+"/usage", "req", s.getUsage)
		s.add(r, "GET", p+"/requests", "req", s.getRequests)
		s.add(r, "GET", p+"/key", "req", s.callingKey)
		s.add(r, "POST", p+"/messages", "msg", s.messages)
		s.add(r, "POST", p+"/messages/count_tokens", "req", s.countTokens)
		get(r, p+"/healthz", s.healthz)
		get(r, p+"/health", s.healthz)
		get(r, p+"/readyz", s.readyz)
	}
	// The prefix Anthropic-compatible tools are often given.
	s.add(r, "POST", "/anthropic/v1/messages", "msg", s.messages)
	s.add(r, "POST", "/anthropic/v1/messages/count_tokens", "req", s.countTokens)
	s.add(r, "GET", "/anthropic/v1/models", "req", s.listModels)
	s.add(r, "GET", "/anthropic/v1/models/:model", "req", s.getModel)
	get(r, "/healthz", s.healthz)
	get(r, "/health", s.healthz)
	get(r, "/readyz", s.readyz)
	s.adminRouter = newRouter()
	if o.Metrics != nil {
		metricsRoute := func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) { o.Metrics.ServeHTTP(w, r) }
		get(s.adminRouter, "/metrics", metricsRoute)
		if !o.SeparateAdmin {
			get(r, "/metrics", metricsRoute)
		}
	}
	for _, rt := range []*httprouter.Router{r, s.adminRouter} {
		rt.NotFound = s.unmatched(apierr.NoRoute)
		rt.MethodNotAllowed = s.unmatched(nil)
		rt.GlobalOPTIONS = http.HandlerFunc(s.options)
		rt.PanicHandler = s.panicked
	}
	s.router = r
}

// Mount serves the admin API's routes and the dashboard's: api on the
// admin listener, and on the public one unless the admin API is kept
// apart; dashboard(adminView) on each, the admin view where the admin
// API is.
func (s *Server) Mount(api []admin.Route, dashboard func(adminView bool) []admin.Route) {
	s.mount(s.adminRouter, api)
	if s.separate {
		s.mount(s.router, dashboard(false))
		s.mount(s.adminRouter, dashboard(true))
		return
	}
	s.mount(s.router, api)
	s.mount(s.router, dashboard(true))
}

func (s *Server) mount(r *httprouter.Router, routes []admin.Route) {
	for _, rt := range routes {
		if rt.Page != nil {
			get(r, rt.Path, rt.Page)
			continue
		}
		h := rt.Handle
		s.add(r, rt.Method, rt.Path, rt.IDPrefix, func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *call) error {
			p := &admin.Principal{}
			err := h(w, r.WithContext(admin.WithPrincipal(r.Context(), p)), ps)
			c.adminToken = p.Token
			return err
		})
	}
}

// get registers h for GET and HEAD (whose answer Go's server sends
// without its body).
func get(r *httprouter.Router, path string, h httprouter.Handle) {
	r.GET(path, h)
	r.HEAD(path, h)
}

// newRouter is an httprouter that answers a path it does not know with
// 404, never with a redirect to a path it does (a redirected POST would
// lose its body, and the answer would not be JSON).
func newRouter() *httprouter.Router {
	r := httprouter.New()
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	return r
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.serve(w, r, s.router) }

// AdminHandler serves only the admin API, for a listener of its own.
func (s *Server) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, s.adminRouter) })
}

// serve answers CORS (a preflight at once), bounds the time to receive
// the request's body, then routes it. A
// body sent with a method that takes none is read (and dropped) first, so
// that one trickled in slowly is answered 408 in time.
func (s *Server) serve(w http.ResponseWriter, r *http.Request, h http.Handler) {
	if s.cors(w, r) {
		return // a preflight
	}
	s.limitBody(w, r)
	if !takesBody(r.Method) {
		if e := drainBody(r); e != nil {
			w.Header().Set("X-Request-Id", crockford.NewID("req"))
			apierr.Write(w, e)
			return
		}
	}
	h.ServeHTTP(w, r)
}

// unmatched answers a request no route takes: e, or 405 when e is nil
// (the router has set Allow).
func (s *Server) unmatched(e *apierr.Error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		w.Header().Set("X-Request-Id", crockford.NewID("req"))
		e := e
		if e == nil {
			e = &apierr.Error{Code: apierr.CodeMethodNotAllowed, Message: r.Method + " is not allowed here; allowed: " + w.Header().Get("Allow")}
		}
		if de := drainBody(r); de != nil {
			e = de
		}
		apierr.Write(w, e)
		s.metrics.done(r.Context(), "unmatched", r.Method, e.Status(), &call{}, time.Since(start))
	})
}

// options answers OPTIONS on a known path: 204 with Allow (set by the
// router), no body.
func (s *Server) options(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Request-Id", crockford.NewID("req"))
	w.WriteHeader(http.StatusNoContent)
}

// panicked answers a handler's panic with a 500, the details logged only.
func (s *Server) panicked(w http.ResponseWriter, r *http.Request, v any) {
	if v == http.ErrAbortHandler {
		panic(v)
	}
	s.log.Error("panic", "method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(v))
	apierr.Write(w, &apierr.Error{Code: apierr.CodeServerError, Message: "internal error; it has been logged"})
}
