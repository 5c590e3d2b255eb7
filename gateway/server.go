// Package gateway is obol's HTTP surface: routes, authentication, request
// decoding, the SSE relay, errors and headers. It declares the small
// interfaces it consumes; the packages behind them never import it.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/crockford"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
	"github.com/obol/obol/wire/anthropic"
	"github.com/obol/obol/wire/openai"
)

// Upstream calls a model's backends.
type Upstream interface {
	// Send posts a chat completion body (without "model") to a backend of m.
	// api is the route: chat, legacy completions or embeddings.
	Send(ctx context.Context, m *models.Model, api models.API, body models.Body, stream bool) (*models.Response, error)
	// Probe reports whether at least one backend of m answers.
	Probe(ctx context.Context, m *models.Model) error
}

// Ledger records each request's usage once and reads a key's month.
type Ledger interface {
	// Record queues rec without waiting for the store; the ledger keeps
	// it until it is stored (retrying, spooling at shutdown). The channel
	// is closed once its write was tried.
	Record(rec usage.Record) <-chan struct{}
	// Summary is key's month, period YYYY-MM.
	Summary(ctx context.Context, key, period string) (*usage.Summary, error)
}

// Options configure a Server. Catalog, Upstream, Keys, Quota and Ledger
// are required.
type Options struct {
	Catalog  *models.Catalog
	Upstream Upstream
	Keys     Authenticator
	Quota    Quota
	Ledger   Ledger
	Log      *slog.Logger
	// MaxBodyBytes bounds a request body (413 past it); 0 means 8 MiB.
	MaxBodyBytes int64
	// KeepAlive is the interval of SSE comments sent while a stream waits
	// for its first token; 0 means 10 seconds.
	KeepAlive time.Duration
	// Projects names the keys' projects in /v1/key; nil: no names.
	Projects ProjectNames
	// AccessLog, when set, receives each request's access-log line as
	// JSON, encoded by hand, in one Write (Log's JSON handler must write
	// to the same writer for one stream); nil: the line goes through Log.
	AccessLog io.Writer
	// Spend reads a project's spend this month for /v1/key; nil: none
	// is shown.
	Spend ProjectSpend
	// Prices are each model's prices (none: its tokens cost nothing).
	Prices map[string]money.Prices
	// CORS lets pages of other origins call the gateway; none by default.
	CORS CORS
	// FailureGuard counts failed authentications per address; nil means
	// a count of this replica's own (quota.Failures).
	FailureGuard FailureGuard
	// BodyTimeout bounds the time to receive a request body (408 past
	// it); 0 means 30 seconds.
	BodyTimeout time.Duration
	// Dependencies are the stores readiness checks (ready.go).
	Dependencies []Dependency
	// SeparateAdmin keeps the admin API (and /metrics) off the public
	// handler; they are then served only by AdminHandler, on a listener of
	// their own.
	SeparateAdmin bool
	// Meter receives the gateway's metrics; nil means the global
	// OpenTelemetry meter provider.
	Meter metric.Meter
	// Metrics, if set, serves GET /metrics (the Prometheus exposition).
	Metrics http.Handler
	// Tracer makes the request spans; nil means the global tracer
	// provider (a no-op unless tracing was set up).
	Tracer trace.Tracer
}

// DefaultMaxBodyBytes is the body limit when Options.MaxBodyBytes is 0:
// room for a few base64 images.
const DefaultMaxBodyBytes = 8 << 20

// Server is the gateway's http.Handler.
type Server struct {
	live     atomic.Pointer[Live] // live.go
	refusals perSecond            // request log entries of requests no backend answered
	up       Upstream
	keys     Authenticator
	quota    Quota
	ledger   Ledger
	log      *slog.Logger
	maxBody  int64
	router   *httprouter.Router
	ready    readiness
	guard    FailureGuard

	leases      *leases
	accessLog   io.Writer
	projects    ProjectNames
	spend       ProjectSpend
	separate    bool // the admin API is on AdminHandler only
	adminRouter *httprouter.Router
	metrics     *metrics
	tracer      trace.Tracer

	// abort ends the work of requests still in flight when the shutdown
	// grace is over; inflight counts the handlers yet to return.
	abort    context.Context
	abortNow context.CancelFunc
	inflight atomic.Int64
}

// New returns a Server with every route registered.
func New(o Options) (*Server, error) {
	if o.Catalog == nil || o.Upstream == nil || o.Keys == nil || o.Quota == nil || o.Ledger == nil {
		return nil, errors.New("gateway: Catalog, Upstream, Keys, Quota and Ledger are required")
	}
	s := &Server{
		up: o.Upstream, keys: o.Keys, quota: o.Quota, ledger: o.Ledger, log: o.Log, maxBody: o.MaxBodyBytes,
	}
	s.live.Store((&Live{Catalog: o.Catalog, Prices: o.Prices, CORS: o.CORS, BodyTimeout: o.BodyTimeout, KeepAlive: o.KeepAlive}).withDefaults())
	s.abort, s.abortNow = context.WithCancel(context.Background())
	s.leases = newLeases(o.Quota, s.log)
	s.guard = o.FailureGuard
	if s.guard == nil {
		s.guard = quota.NewFailures(quota.DefaultFailureLimit)
	}
	s.metrics = newMetrics(o.Meter)
	s.tracer = defaultTracer(o.Tracer)
	s.projects, s.spend, s.separate = o.Projects, o.Spend, o.SeparateAdmin
	s.accessLog = o.AccessLog
	s.ready.deps = o.Dependencies
	if s.log == nil {
		s.log = slog.New(slog.NewJSONHandler(io.Discard, nil))
	}
	if s.maxBody <= 0 {
		s.maxBody = DefaultMaxBodyBytes
	}
	s.ready.server = s

	s.routes(o)
	return s, nil
}

// BaseContext is for http.Server.BaseContext: requests served under it
// end when Abort is called.
func (s *Server) BaseContext(net.Listener) context.Context { return s.abort }

// Abort ends the requests still in flight, for a shutdown whose grace is
// over: streams stop with an error event, and each request still records
// and settles what it used. Requests need the server's BaseContext for
// their streams to see it.
func (s *Server) Abort() { s.abortNow() }

// Wait returns once every request handler has returned, and so recorded
// its usage, or when ctx ends.
func (s *Server) Wait(ctx context.Context) error {
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for s.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d requests still in flight: %w", s.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// call is one request's bookkeeping, from routing to the access log.
type call struct {
	// Turn is its id and arrival, and what its translation saw: the time
	// to the first token relayed (streams), the finish reasons, the time
	// spent waiting on the backend.
	openai.Turn
	key      *keys.Identity
	model    string
	upstream models.API // the backend route the request went to
	usage    *openai.Usage
	counted  bool   // usage is the gateway's own count, not the backend's
	outcome  string // completed, client_gone, upstream_error, shutdown
	stream   bool   // answered as an SSE stream
	backend  string // the backend that answered
	started  bool   // response bytes were sent; errors can no longer change the status
	// rated: the rate-limit headers are set.
	rated bool
	// reservation is the admitted estimate, settled once the answer is out.
	reservation *quota.Reservation
	// finished: answered, recorded and settled (finish); status and code
	// are the answer's.
	finished bool
	status   int
	code     apierr.Code
	// anthropic: the route speaks Anthropic's Messages API, so its errors
	// and rate-limit headers are Anthropic's.
	anthropic bool
	// api is the route's API in the request log: chat, chat/completions,
	// responses, messages, …
	api string
	// dialect is what the backend that answered speaks. pass is a
	// Messages request as its client wrote it, for an Anthropic backend
	// (nil on the other routes), with beta, its anthropic-beta. meter
	// reads an Anthropic backend's usage as its events report it.
	dialect models.Dialect
	pass    []byte
	beta    string
	meter   *anthropic.Meter
	// unportable is why no OpenAI backend can take the request (a
	// Messages document), nil when one can.
	unportable *apierr.Error
	// adminToken names the admin token an admin request came with.
	adminToken string
	// live is the configuration in force when the request arrived.
	live *Live
}

type handlerFunc func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *call) error

// add registers h for method and path (GET also for HEAD); path is also
// its metrics route.
func (s *Server) add(r *httprouter.Router, method, path, idPrefix string, h handlerFunc) {
	if method == http.MethodGet {
		get(r, path, s.handle(path, idPrefix, h))
		return
	}
	r.Handle(method, path, s.handle(path, idPrefix, h))
}

// handle wraps a handler: the request id, its finish (for a handler that
// did not finish the request itself), the access log line, the trace and
// the request's metrics.
func (s *Server) handle(route, idPrefix string, h handlerFunc) httprouter.Handle {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params) {
		s.inflight.Add(1)
		defer s.inflight.Add(-1)
		s.metrics.active.Add(r.Context(), 1)
		defer s.metrics.active.Add(r.Context(), -1)
		c := &call{Turn: openai.Turn{ID: crockford.NewID(idPrefix), Start: time.Now()}, api: routeAPI(route), live: s.live.Load()}
		r, span := s.startSpan(r, route)
		w.Header().Set("X-Request-Id", c.ID)
		s.finish(w, r, c, h(w, r, ps, c))
		s.logAccess(r, c, c.status, c.code)
		endSpan(span, c, c.status, c.code)
		s.metrics.done(r.Context(), route, r.Method, c.status, c, time.Since(c.Start))
	}
}

// finish ends a request, once: an error becomes its answer (unless bytes
// were sent already), then what it used is recorded and its reservation
// settled. The answer goes out first; neither the record nor the
// settlement waits on a store: both are queued and written in the
// background, many per round trip (the shared store's Limiter batches
// settlements; the embedded one settles in process), for waiting would
// only hold this connection's next request.
func (s *Server) finish(w http.ResponseWriter, r *http.Request, c *call, err error) error {
	if c.finished {
		return nil
	}
	c.finished, c.status = true, http.StatusOK
	if err != nil {
		e := s.answerError(w, r, c, err)
		c.status, c.code = e.Status(), e.Code
	}
	if c.reservation != nil || c.usage != nil {
		http.NewResponseController(w).Flush()
		cost := s.record(c, c.status)
		if c.reservation != nil {
			ctx, span := s.child(context.WithoutCancel(r.Context()), "quota.settle")
			s.settle(ctx, c, cost)
			span.End()
		}
	} else if c.key != nil && c.model != "" {
		s.logOnly(c) // refused, or failed before any backend answered
	}
	return nil
}

// logOnly puts a request no backend answered in the request log alone:
// it used nothing and costs nothing. At most refusalsPerSecond a second
// are logged so: a key hammering past its limits cannot turn each
// refusal into a database write.
func (s *Server) logOnly(c *call) {
	if !s.refusals.take(time.Now()) {
		return // a flood of refusals: the access log still has each one
	}
	s.ledger.Record(usage.Record{RequestID: c.ID, Key: c.key.ID, Project: c.key.Project, Model: c.model, Time: c.Start,
		Status: c.status, ErrorCode: string(c.code), API: c.api, Backend: c.backend, Duration: time.Since(c.Start), LogOnly: true,
		Kind: kindOf(c.upstream)})
}

// answerError answers with err, mapped to the API's vocabulary, where
// nothing was sent yet, and logs what the client is not told.
func (s *Server) answerError(w http.ResponseWriter, r *http.Request, c *call, err error) *apierr.Error {
	e := asError(err, c.model)
	if e.Code == apierr.CodeClientClosed && s.abort.Err() != nil {
		e = errShuttingDown // not the client: the gateway stopped it
	}
	if !c.started && e.Code != apierr.CodeClientClosed {
		if de := drainBody(r); de != nil {
			e = de // the body never came: that, not e, is the answer
		}
		s.peekHeaders(w, r, c)
	}
	switch {
	case c.started:
	case c.anthropic:
		anthropic.WriteError(w, e, c.ID)
	default:
		apierr.Write(w, e)
	}
	logError(s.log, c.ID, e)
	return e
}

// record queues what a request used for the ledger: every request a
// backend answered, however it ended. A request no backend answered used
// nothing and is not recorded. It returns the request's cost.
func (s *Server) record(c *call, status int) money.Money {
	if c.usage == nil || c.key == nil {
		if c.key != nil && c.model != "" {
			s.logOnly(c) // admitted, but no backend answered
		}
		return 0
	}
	d := c.usage.Details()
	cost := s.cost(c, c.usage)
	s.ledger.Record(usage.Record{
		RequestID: c.ID, Key: c.key.ID, Project: c.key.Project, Model: c.model, Time: c.Start,
		PromptTokens: int64(c.usage.PromptTokens), CompletionTokens: int64(c.usage.CompletionTokens),
		CachedTokens: d.Cached, CacheWrite5mTokens: d.CacheWrite5m, CacheWrite1hTokens: d.CacheWrite1h,
		ReasoningTokens: d.Reasoning, Status: status, Outcome: c.outcome, Counted: c.counted,
		Cost: cost, Kind: kindOf(c.upstream), API: c.api,
		Backend: c.backend, ErrorCode: string(c.code), TTFT: c.TTFT, Duration: time.Since(c.Start),
	})
	return cost
}

// kindOf is the ledger's kind of a request to api.
func kindOf(api models.API) string {
	if api == models.EmbeddingsAPI {
		return usage.KindEmbeddings
	}
	return usage.KindCompletions
}

// cost is what u costs at the price of c's model in effect when c
// arrived: the one figure the answer shows and the ledger records.
func (s *Server) cost(c *call, u *openai.Usage) money.Money {
	return c.live.Prices[c.model].At(c.Start).Cost(u.Tokens())
}

// refusalsPerSecond bounds the request log entries of requests no
// backend answered, per replica.
const refusalsPerSecond = 1000

// perSecond admits up to refusalsPerSecond events in each second.
type perSecond struct {
	second, n atomic.Int64
}

func (p *perSecond) take(now time.Time) bool {
	sec := now.Unix()
	if p.second.Swap(sec) != sec {
		p.n.Store(0)
	}
	return p.n.Add(1) <= refusalsPerSecond
}
