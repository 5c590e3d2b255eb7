package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/obol/obol/internal/logsink"
)

// serve is obol serve: load the configuration, build the gateway, run
// it until a signal, and close it.
func serve(ctx context.Context, args []string, stderr io.Writer, getenv func(string) string) error {
	cfg, err := serveConfig(args, stderr, getenv)
	if err != nil {
		return err
	}
	// Log lines are gathered and written every logFlush, not one write
	// per line; the deferred Close writes the last of them.
	sink := logsink.New(stderr, logFlush)
	defer sink.Close()
	level := new(slog.LevelVar)
	log := newLogger(sink, cfg.Log, level)
	var access io.Writer
	if cfg.Log.Format == "json" {
		access = sink // access lines encoded by hand, into the same stream
	}
	if addr := getenv("OBOL_DEMO_SIMULATOR"); addr != "" {
		stop, err := startDemoSimulator(ctx, addr, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	a, err := newApp(ctx, cfg, log, access, getenv)
	if err != nil {
		return err
	}
	defer a.close()
	a.level = level
	return a.run(ctx)
}

// logFlush is how often gathered log lines are written: what a kill -9
// can lose.
const logFlush = 100 * time.Millisecond

// serveConfig reads serve's flags and the configuration they name.
func serveConfig(args []string, stderr io.Writer, getenv func(string) string) (*Config, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "configuration file (YAML)")
	addr := fs.String("addr", "", "listen address, overriding the config's listen")
	if err := fs.Parse(args); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if *configPath == "" {
		return nil, &usageError{msg: "serve: -config FILE is required"}
	}
	f, err := os.Open(*configPath)
	if err != nil {
		return nil, &configError{msg: "config: " + err.Error()}
	}
	defer f.Close()
	cfg, err := loadConfig(f, getenv)
	if err != nil {
		return nil, err
	}
	if *addr != "" {
		cfg.Listen = *addr
	}
	cfg.path, cfg.addrFlag = *configPath, *addr
	return cfg, nil
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

// newLogger is the process's logger at c's level, which level holds (a
// reload changes it there).
func newLogger(w io.Writer, c LogConfig, level *slog.LevelVar) *slog.Logger {
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
