package gateway

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/crockford"
	"github.com/obol/obol/internal/httpapi"
)

// Readiness a load balancer can trust: 200 while the replica can serve
// its traffic, the parts that are degraded named in the body; 503 only
// when it cannot (a store it needs unreachable in fail-closed mode) or
// while it drains before a shutdown. A model without a reachable backend
// degrades the replica but leaves it ready: every replica shares the
// backends, and pulling them all would serve no one.

// Pinger is a store shared by replicas, which can be unreachable.
type Pinger interface{ Ping(context.Context) error }

// Dependency is a store readiness checks.
type Dependency struct {
	Name string // "redis", "postgres": the key in /readyz checks
	Ping Pinger
	// Required: unreachable, the replica cannot serve (fail-closed);
	// otherwise it serves degraded, and Degraded says how.
	Required bool
	Degraded string
}

// Readiness statuses.
const (
	statusReady    = "ready"
	statusDegraded = "degraded"
	statusNotReady = "not_ready"
	statusDraining = "draining"
)

type readyReport struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
}

type readiness struct {
	server   *Server
	deps     []Dependency
	draining atomic.Bool
	mu       sync.Mutex
	at       time.Time
	last     readyReport
}

const readyCacheFor = time.Second

// readyz is readiness. It names no backend (it answers without
// authentication); GET /v1/admin/backends does. The report is cached
// briefly so that probes cannot flood the backends.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ httprouter.Params) {
	w.Header().Set("X-Request-Id", crockford.NewID("req"))
	rep := s.ready.report(r.Context())
	status := http.StatusOK
	if rep.Status == statusNotReady || rep.Status == statusDraining {
		status = http.StatusServiceUnavailable
	}
	httpapi.WriteJSON(w, status, rep)
}

// Drain turns readiness to 503 "draining" for good: the process is about
// to stop, and a load balancer should send it no more requests while it
// still serves those that come.
func (s *Server) Drain() { s.ready.draining.Store(true) }

// forget drops the cached report: the configuration it checked changed.
func (rd *readiness) forget() {
	rd.mu.Lock()
	rd.at = time.Time{}
	rd.mu.Unlock()
}

func (rd *readiness) report(ctx context.Context) readyReport {
	if rd.draining.Load() {
		return readyReport{Status: statusDraining, Checks: map[string]string{"shutdown": "draining"}}
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if time.Since(rd.at) < readyCacheFor {
		return rd.last
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	list := rd.server.live.Load().Catalog.List()
	models := make([]error, len(list))
	stores := make([]error, len(rd.deps))
	var wg sync.WaitGroup
	for i, m := range list {
		wg.Go(func() { models[i] = rd.server.up.Probe(ctx, m) })
	}
	for i, d := range rd.deps {
		wg.Go(func() { stores[i] = d.Ping.Ping(ctx) })
	}
	wg.Wait()
	rep := readyReport{Status: statusReady, Checks: make(map[string]string, len(list)+len(rd.deps))}
	worse := func(status string) {
		if status == statusNotReady || rep.Status == statusReady {
			rep.Status = status
		}
	}
	for i, d := range rd.deps {
		switch {
		case stores[i] == nil:
			rep.Checks[d.Name] = "ok"
		case d.Required:
			rep.Checks[d.Name] = "unreachable"
			worse(statusNotReady)
			rd.server.log.Warn("not ready", "store", d.Name, "err", stores[i])
		default:
			rep.Checks[d.Name] = "unreachable: " + d.Degraded
			worse(statusDegraded)
			rd.server.log.Warn("degraded", "store", d.Name, "err", stores[i])
		}
	}
	for i, m := range list {
		if models[i] != nil {
			rep.Checks["model:"+m.Name] = "no backend reachable"
			worse(statusDegraded)
			rd.server.log.Warn("degraded", "model", m.Name, "err", models[i])
		} else {
			rep.Checks["model:"+m.Name] = "ok"
		}
	}
	rd.at, rd.last = time.Now(), rep
	return rep
}
