package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
)

func serve(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML)")
	addr := fs.String("addr", "", "listen address, overriding the config's listen")
	if err := fs.Parse(args); err != nil {
		return &usageError{msg: err.Error()}
	}
	if *configPath == "" {
		return &usageError{msg: "serve: -config FILE is required"}
	}
	f, err := os.Open(*configPath)
	if err != nil {
		return &configError{msg: "config: " + err.Error()}
	}
	cfg, err := loadConfig(f, getenv)
	f.Close()
	if err != nil {
		return err
	}
	if *addr != "" {
		cfg.Listen = *addr
	}
	log := newLogger(stderr, cfg.Log)

	catalog, err := cfg.catalog(getenv)
	if err != nil {
		return err
	}
	metricsHandler, stopMetrics, err := setupMetrics()
	if err != nil {
		return err
	}
	defer stopMetrics()
	tracing, stopTracing, err := setupTracing(ctx, getenv)
	if err != nil {
		return err
	}
	defer stopTracing()
	if tracing {
		log.Info("tracing: spans exported over OTLP/HTTP as the OTEL_* variables say")
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	st, err := openStore(ctx, cfg, log, tracing)
	if err != nil {
		return err
	}
	// Closed last, after every request has recorded its usage; writing
	// what is queued gets a grace of its own.
	defer func() {
		if err := st.closeAll(cfg.ShutdownGrace); err != nil {
			log.Error("closing the store", "err", err)
		}
	}()
	reg, err := keys.NewRegistry(ctx, st.keys, keys.Options{
		Static:     cfg.staticKeys(),
		Tiers:      cfg.tiers(),
		KnownModel: func(name string) bool { return catalog.Get(name) != nil },
		Log:        log,
	})
	if err != nil {
		return &configError{msg: "config: keys: " + err.Error()}
	}
	defer reg.Close()
	adminToken := getenv("OBOL_ADMIN_TOKEN")
	upstream := models.NewClient(models.BreakerOptions(cfg.Breaker))
	gw, err := gateway.New(gateway.Options{
		Catalog:       catalog,
		Upstream:      upstream,
		Backends:      upstream,
		Keys:          reg,
		Quota:         st.quota,
		Ledger:        st.ledger,
		UsageAdmin:    st.ledger,
		SharedStore:   st.shared,
		Log:           log,
		MaxBodyBytes:  cfg.MaxBodyBytes,
		KeepAlive:     cfg.StreamKeepAlive,
		Admin:         reg,
		AdminToken:    adminToken,
		SeparateAdmin: cfg.AdminListen != "",
		Metrics:       metricsHandler,
	})
	if err != nil {
		return err
	}
	if adminToken == "" {
		log.Info("admin API off: OBOL_ADMIN_TOKEN is not set")
	} else if len(adminToken) < 16 {
		return &configError{msg: "OBOL_ADMIN_TOKEN: at least 16 characters, please (openssl rand -hex 32)"}
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           gw,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       gw.BaseContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.H2C {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	log.Info("obol listening", "addr", ln.Addr().String(), "models", len(catalog.List()), "keys", len(cfg.Keys), "h2c", cfg.H2C)

	done := make(chan error, 2)
	go func() { done <- srv.Serve(ln) }()
	var adminSrv *http.Server
	if cfg.AdminListen != "" {
		aln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			srv.Close()
			return fmt.Errorf("admin listen: %w", err)
		}
		adminSrv = &http.Server{Handler: adminHandler(gw.AdminHandler(), cfg.Pprof), ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
		log.Info("obol admin API listening", "addr", aln.Addr().String())
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
	// Stop accepting; let requests and streams in flight finish within the grace.
	log.Info("shutting down", "grace", cfg.ShutdownGrace.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownGrace)
	defer cancel()
	if adminSrv != nil {
		go adminSrv.Shutdown(sctx)
	}
	if err := srv.Shutdown(sctx); err != nil {
		// Requests still running are cut short, and each records and
		// settles what it used before the connections close.
		log.Warn("grace period over; ending the requests left", "err", err)
		gw.Abort()
		wctx, cancel := context.WithTimeout(context.Background(), abortWait)
		defer cancel()
		if err := gw.Wait(wctx); err != nil {
			log.Error("requests did not end after the abort", "err", err)
		}
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// setupMetrics installs the global OpenTelemetry meter provider, read by
// a Prometheus exporter, and returns the /metrics handler. Every package's
// instruments (quota, usage, models, gateway) report through it, with the
// Go runtime's and the process's own.
func setupMetrics() (http.Handler, func(), error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	otel.SetMeterProvider(mp)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), func() { mp.Shutdown(context.Background()) }, nil
}

// setupTracing exports spans over OTLP/HTTP when the standard variables
// ask for it (OTEL_EXPORTER_OTLP_ENDPOINT or ..._TRACES_ENDPOINT, unless
// OTEL_TRACES_EXPORTER=none or OTEL_SDK_DISABLED=true); otherwise tracing
// stays the global no-op. The exporter reads the rest of OTEL_* itself.
func setupTracing(ctx context.Context, getenv func(string) string) (bool, func(), error) {
	off := func() {}
	if getenv("OTEL_SDK_DISABLED") == "true" || getenv("OTEL_TRACES_EXPORTER") == "none" ||
		(getenv("OTEL_EXPORTER_OTLP_ENDPOINT") == "" && getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") == "") {
		return false, off, nil
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return false, off, fmt.Errorf("tracing: %w", err)
	}
	name := getenv("OTEL_SERVICE_NAME")
	if name == "" {
		name = "obol"
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", name)))
	if err != nil {
		return false, off, fmt.Errorf("tracing: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return true, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		tp.Shutdown(sctx) // flushes what is batched
	}, nil
}

// abortWait bounds the wait for aborted requests to record their usage.
const abortWait = 5 * time.Second

func newLogger(w io.Writer, c LogConfig) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// hashKey prints the SHA-256 of the secret read from stdin (a trailing
// newline is not part of the secret).
func hashKey(stdin io.Reader, stdout io.Writer) error {
	b, err := io.ReadAll(io.LimitReader(stdin, 4096))
	if err != nil {
		return fmt.Errorf("read secret: %w", err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return &usageError{msg: "hash-key: no secret on standard input"}
	}
	d := sha256.Sum256([]byte(s))
	fmt.Fprintln(stdout, hex.EncodeToString(d[:]))
	return nil
}

// adminHandler is the admin listener's handler: the gateway's admin routes
// and, when asked for, Go's profiles.
func adminHandler(admin http.Handler, profiles bool) http.Handler {
	if !profiles {
		return admin
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/", admin)
	return mux
}
