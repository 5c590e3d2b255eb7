package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/obol/obol/admin"
	"github.com/obol/obol/alerts"
	"github.com/obol/obol/gateway"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
)

// app is a built gateway: its configuration, stores, key registry and
// handler, and what closes them in the right order.
type app struct {
	cfg *Config // the configuration in force (reload.go replaces it)
	log *slog.Logger
	gw  *gateway.Server
	// What a reload changes: the key registry, the admin API, the
	// catalog keys are checked against, the log level; and what it reads.
	reg      *keys.Registry
	adm      *admin.API
	alerts   *alerts.Notifier
	catalog  atomic.Pointer[models.Catalog]
	level    *slog.LevelVar
	getenv   func(string) string
	path     string
	reloadMu sync.Mutex
	// fileSum is the SHA-256 of the file last loaded, refusedSum of the
	// last one a reload refused.
	fileSum, refusedSum [sha256.Size]byte
	// models is how many models the catalog holds, for the log.
	models int
	// closers run last-in first-out at close: the registry before the
	// stores, which write their queues last.
	closers []func()
}

// newApp builds everything serve needs, from the configuration, without
// listening. On error, what was built is closed.
func newApp(ctx context.Context, cfg *Config, log *slog.Logger, access io.Writer, getenv func(string) string) (_ *app, err error) {
	a := &app{cfg: cfg, log: log, getenv: getenv, path: cfg.path}
	if raw, err := os.ReadFile(cfg.path); err == nil {
		a.fileSum = sha256.Sum256(raw)
	}
	defer func() {
		if err != nil {
			a.close() // a, not the nil this returns
		}
	}()
	catalog, err := catalogOf(cfg, getenv)
	if err != nil {
		return nil, err
	}
	metricsHandler, stopMetrics, err := setupMetrics()
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, stopMetrics)
	tracing, stopTracing, err := setupTracing(ctx, getenv)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, stopTracing)
	if tracing {
		log.Info("tracing: spans exported over OTLP/HTTP as the OTEL_* variables say")
	}
	adminTokens, err := adminTokensOf(cfg, getenv)
	if err != nil {
		return nil, &configError{msg: err.Error()}
	}
	if !adminTokens.Set() {
		log.Info("admin API off: neither OBOL_ADMIN_TOKEN, OBOL_ADMIN_TOKENS nor admin_tokens is set")
	} else {
		log.Info("admin API on", "admin_tokens", adminTokens.Names())
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	hooks, err := webhooksOf(cfg, getenv)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg, log, tracing, hooks)
	if st != nil {
		a.alerts = st.alerts
	}
	if err != nil {
		return nil, err
	}
	// Closed last, after every request has recorded its usage; writing
	// what is queued gets a grace of its own.
	a.closers = append(a.closers, func() {
		if err := st.closeAll(cfg.ShutdownGrace); err != nil {
			log.Error("closing the store", "err", err)
		}
	})
	a.catalog.Store(catalog)
	reg, err := keys.NewRegistry(ctx, st.keys, keys.Options{
		Static:     staticKeysOf(cfg),
		Tiers:      tiersOf(cfg),
		Projects:   projectsOf(cfg),
		KnownModel: func(name string) bool { return a.catalog.Load().Get(name) != nil },
		Log:        log,
	})
	if err != nil {
		return nil, &configError{msg: "config: keys: " + err.Error()}
	}
	a.closers = append(a.closers, reg.Close)
	a.reg = reg
	if err := a.buildHandlers(st, catalog, adminTokens, metricsHandler, access); err != nil {
		return nil, err
	}
	a.models = len(catalog.List())
	return a, nil
}

// buildHandlers builds the gateway and the admin API it mounts.
func (a *app) buildHandlers(st *store, catalog *models.Catalog, adminTokens *keys.AdminTokens, metricsHandler http.Handler, access io.Writer) error {
	cfg, log, reg := a.cfg, a.log, a.reg
	upstream := models.NewClient(models.BreakerOptions(cfg.Breaker))
	var err error
	a.gw, err = gateway.New(gateway.Options{
		Catalog: catalog, Upstream: upstream, Keys: reg, Projects: reg,
		Quota: st.quota, Dependencies: st.deps, Ledger: st.ledger, Spend: st.ledger,
		FailureGuard: st.failures, CORS: gateway.CORS{AllowedOrigins: cfg.CORS.AllowedOrigins}, Prices: pricesOf(cfg),
		Log: log, MaxBodyBytes: cfg.MaxBodyBytes, BodyTimeout: cfg.BodyTimeout, KeepAlive: cfg.StreamKeepAlive,
		SeparateAdmin: cfg.AdminListen != "", Metrics: metricsHandler, AccessLog: access,
	})
	if err != nil {
		return err
	}
	adm := admin.New(admin.Options{Tokens: adminTokens, Keys: reg, Projects: reg, Usage: st.ledger, Alerts: st.alertAdmin(),
		Backends: upstream, Catalog: catalog, Auth: reg, Failed: a.gw.FailedAuth, AdminAddr: cfg.AdminListen,
		MaxBodyBytes: cfg.MaxBodyBytes, Log: log, Reloader: a})
	a.adm = adm
	a.gw.Mount(adm.Routes(), adm.Dashboard)
	return nil
}

// close releases what newApp built, in reverse order.
func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// run serves until ctx ends, then shuts down within the grace: requests
// and streams in flight finish, or are cut and still recorded.
func (a *app) run(ctx context.Context) error {
	stopReloads := a.watchReloads(ctx)
	defer stopReloads()
	ln, err := net.Listen("tcp", a.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := a.server(a.gw)
	if a.cfg.H2C {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	a.log.Info("obol listening", "addr", ln.Addr().String(), "models", a.models, "keys", len(a.cfg.Keys), "h2c", a.cfg.H2C)
	done := make(chan error, 2)
	go func() { done <- srv.Serve(ln) }()
	var adminSrv *http.Server
	if a.cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", a.cfg.AdminListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		adminSrv = a.server(adminHandler(a.gw.AdminHandler(), a.cfg.Pprof))
		a.log.Info("obol admin API listening", "addr", aln.Addr().String())
		go func() {
			if err := adminSrv.Serve(aln); !errors.Is(err, http.ErrServerClosed) {
				done <- err
			}
		}()
	}
	select {
	case err := <-done:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	a.drain()
	a.shutdown(srv, adminSrv)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	a.log.Info("stopped")
	return nil
}

// server is an http.Server for h with the gateway's timeouts: the public
// and the admin listener alike. A request's headers must arrive within
// 10 s (its body within body_timeout, which the gateway bounds); an idle
// connection is closed after 2 minutes.
func (a *app) server(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       a.gw.BaseContext,
		ErrorLog:          slog.NewLogLogger(a.log.Handler(), slog.LevelWarn),
	}
}

// drain answers /readyz with 503 for shutdown_drain while the listeners
// still serve: a load balancer polling readiness stops sending new
// requests before the gateway stops accepting them.
func (a *app) drain() {
	a.gw.Drain()
	if d := *a.cfg.ShutdownDrain; d > 0 {
		a.log.Info("draining: /readyz answers 503 while requests are still served", "drain", d.String())
		time.Sleep(d)
	}
}

// shutdown stops accepting and lets requests and streams in flight finish
// within the grace; past it, they are cut short, and each records and
// settles what it used before the connections close.
func (a *app) shutdown(srv, adminSrv *http.Server) {
	a.log.Info("shutting down", "grace", a.cfg.ShutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownGrace)
	defer cancel()
	if adminSrv != nil {
		go adminSrv.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil {
		a.log.Warn("grace period over; ending the requests left", "err", err)
		a.gw.Abort()
		wctx, cancel := context.WithTimeout(context.Background(), abortWait)
		defer cancel()
		if err := a.gw.Wait(wctx); err != nil {
			a.log.Error("requests did not end after the abort", "err", err)
		}
		srv.Close()
	}
}
