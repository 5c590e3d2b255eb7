package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/obol/obol/gateway"
)

// Configuration reload: SIGHUP, POST /v1/admin/reload and, with
// reload.watch, a change of the file re-read it. What can change at run
// time changes at once for the requests that arrive next (models,
// backends, timeouts, prices, tiers, projects, keys, CORS origins, admin
// tokens, webhooks, the log level); a configuration that fails validation changes
// nothing; what needs a restart is named, not silently ignored.

// liveFields are the top-level fields a reload applies; every other one
// needs a restart (log: its level is applied, its format is not).
var liveFields = map[string]bool{"models": true, "tiers": true, "projects": true, "keys": true, "cors": true,
	"body_timeout": true, "stream_keepalive": true, "admin_tokens": true, "log": true, "webhooks": true}

// reloadReport is what a reload did, as POST /v1/admin/reload answers it
// and the log records it.
type reloadReport struct {
	Status string `json:"status"` // reloaded, unchanged or failed
	// Error is why a configuration was refused, in the errors' shape.
	Error           *reloadError `json:"error,omitempty"`
	Changed         []string     `json:"changed"`          // the fields now in force
	RestartRequired []string     `json:"restart_required"` // changed, but in force only after a restart
	Trigger         string       `json:"trigger"`
}

type reloadError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Type    string `json:"type"`
}

// reloads counts reloads by outcome and trigger.
var reloads, _ = otel.Meter("github.com/obol/obol/cmd/obol").Int64Counter("obol.config.reloads",
	metric.WithUnit("{reload}"), metric.WithDescription("Configuration reloads, by outcome (reloaded, unchanged, failed) and trigger"))

// Reload re-reads the configuration file and puts what can change in
// force; by says who asked (SIGHUP, watch, or the admin token's name).
func (a *app) Reload(ctx context.Context, by string) (any, bool) {
	rep := a.reload(ctx, by)
	return rep, rep.Status != "failed"
}

func (a *app) reload(ctx context.Context, by string) reloadReport {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	rep := reloadReport{Trigger: by, Changed: []string{}, RestartRequired: []string{}}
	defer func() {
		reloads.Add(context.WithoutCancel(ctx), 1, metric.WithAttributes(attribute.String("outcome", rep.Status), attribute.String("trigger", triggerKind(by))))
		if rep.Status == "failed" {
			a.log.Error("configuration reload failed; the running configuration stays", "trigger", by, "err", rep.Error.Message)
			return
		}
		a.log.Info("configuration reloaded", "trigger", by, "status", rep.Status, "changed", rep.Changed, "restart_required", rep.RestartRequired)
	}()
	next, raw, err := a.readConfig()
	if err == nil {
		err = a.apply(ctx, next)
	}
	if err != nil {
		rep.Status, rep.Error = "failed", &reloadError{Code: "bad_request", Message: err.Error(), Type: "invalid_request_error"}
		return rep
	}
	a.fileSum = sha256.Sum256(raw)
	rep.Changed, rep.RestartRequired = diffConfig(a.cfg, next)
	rep.Status = "reloaded"
	if len(rep.Changed) == 0 && len(rep.RestartRequired) == 0 {
		rep.Status = "unchanged"
	}
	keepRestartFields(next, a.cfg)
	a.cfg = next
	return rep
}

// readConfig reads and checks the file the gateway was started with.
func (a *app) readConfig() (*Config, []byte, error) {
	raw, err := os.ReadFile(a.path)
	if err != nil {
		return nil, nil, fmt.Errorf("config: %w", err)
	}
	next, err := loadConfig(bytes.NewReader(raw), a.getenv)
	if err != nil {
		return nil, nil, err
	}
	next.path, next.addrFlag = a.cfg.path, a.cfg.addrFlag
	if next.addrFlag != "" {
		next.Listen = next.addrFlag
	}
	return next, raw, nil
}

// apply builds everything next needs before changing anything, then puts
// it in force: the keys first (the one step that can still refuse), then
// the gateway's models and prices, the admin API's, and the log level.
func (a *app) apply(ctx context.Context, next *Config) error {
	catalog, err := catalogOf(next, a.getenv)
	if err != nil {
		return err
	}
	tokens, err := adminTokensOf(next, a.getenv)
	if err != nil {
		return err
	}
	hooks, err := webhooksOf(next, a.getenv)
	if err != nil {
		return err
	}
	if err := a.reg.Reconfigure(ctx, staticKeysOf(next), tiersOf(next), projectsOf(next)); err != nil {
		return err
	}
	a.catalog.Store(catalog)
	live := gateway.Live{Catalog: catalog, Prices: pricesOf(next), CORS: gateway.CORS{AllowedOrigins: next.CORS.AllowedOrigins},
		BodyTimeout: next.BodyTimeout, KeepAlive: next.StreamKeepAlive}
	if err := a.gw.Reconfigure(live); err != nil {
		return err
	}
	a.adm.SetCatalog(catalog)
	a.adm.SetTokens(tokens)
	if a.alerts != nil {
		a.alerts.SetWebhooks(hooks)
	}
	if a.level != nil {
		a.level.UnmarshalText([]byte(next.Log.Level))
	}
	return nil
}

// diffConfig names the top-level fields that differ: those a reload put
// in force, and those that need a restart.
func diffConfig(old, next *Config) (changed, restart []string) {
	changed, restart = []string{}, []string{}
	ov, nv := reflect.ValueOf(old).Elem(), reflect.ValueOf(next).Elem()
	for i := range ov.NumField() {
		name := yamlName(ov.Type().Field(i))
		if name == "" || reflect.DeepEqual(ov.Field(i).Interface(), nv.Field(i).Interface()) {
			continue
		}
		switch {
		case name == "log" && old.Log.Format != next.Log.Format:
			restart = append(restart, "log.format")
			if old.Log.Level != next.Log.Level {
				changed = append(changed, "log.level")
			}
		case liveFields[name]:
			changed = append(changed, name)
		default:
			restart = append(restart, name)
		}
	}
	return changed, restart
}

// keepRestartFields copies into next the running values of the fields
// that need a restart, so that the next reload still names them.
func keepRestartFields(next, running *Config) {
	nv, rv := reflect.ValueOf(next).Elem(), reflect.ValueOf(running).Elem()
	for i := range nv.NumField() {
		if name := yamlName(nv.Type().Field(i)); name != "" && !liveFields[name] {
			nv.Field(i).Set(rv.Field(i))
		}
	}
	next.Log.Format = running.Log.Format
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if !f.IsExported() || name == "-" {
		return ""
	}
	return name
}

func triggerKind(by string) string {
	if strings.HasPrefix(by, "admin:") {
		return "admin"
	}
	return by
}

// watchReloads reloads on SIGHUP and, with reload.watch, when the file's
// contents change, until ctx ends or stop is called.
func (a *app) watchReloads(ctx context.Context) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var tick <-chan time.Time
	var ticker *time.Ticker
	if a.cfg.Reload.Watch {
		every := a.cfg.Reload.Interval
		if every <= 0 {
			every = 2 * time.Second
		}
		ticker = time.NewTicker(every)
		tick = ticker.C
	}
	go func() {
		for {
			select {
			case <-hup:
				a.reload(ctx, "SIGHUP")
			case <-tick:
				a.reloadIfChanged(ctx)
			case <-ctx.Done():
				return
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		if ticker != nil {
			ticker.Stop()
		}
		close(done)
	}
}

// reloadIfChanged reloads when the file's contents differ from those
// last loaded (or last refused: a bad file is reported once, not at
// every poll).
func (a *app) reloadIfChanged(ctx context.Context) {
	raw, err := os.ReadFile(a.path)
	if err != nil {
		return
	}
	sum := sha256.Sum256(raw)
	a.reloadMu.Lock()
	seen := sum == a.fileSum || sum == a.refusedSum
	a.reloadMu.Unlock()
	if !seen && a.reload(ctx, "watch").Status == "failed" {
		a.reloadMu.Lock()
		a.refusedSum = sum
		a.reloadMu.Unlock()
	}
}
