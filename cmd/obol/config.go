package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/obol/obol/keys"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// Config is the YAML configuration. Its field names are a public interface.
type Config struct {
	Listen string `yaml:"listen"`
	// AdminListen, when set, serves the admin API on this address only,
	// off the public listener.
	AdminListen string `yaml:"admin_listen"`
	// Pprof serves Go's profiles on AdminListen, never on the public port.
	Pprof bool `yaml:"pprof"`
	// H2C accepts HTTP/2 without TLS (prior knowledge) beside HTTP/1.1.
	H2C      bool           `yaml:"h2c"`
	Redis    RedisConfig    `yaml:"redis"`
	Postgres PostgresConfig `yaml:"postgres"`
	// DataDir holds the embedded store's files.
	DataDir string `yaml:"data_dir"`
	// ShutdownDrain is how long, after SIGTERM, /readyz answers 503
	// while the listener still serves, so that a load balancer stops
	// sending before the gateway stops accepting (default 5s; 0s: none).
	ShutdownDrain *time.Duration `yaml:"shutdown_drain"`
	// ShutdownGrace is how long requests may run after that.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// MaxBodyBytes bounds a request body (413 past it).
	MaxBodyBytes int64 `yaml:"max_body_bytes"`
	// BodyTimeout bounds the time to receive a request body (408 past it).
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// StreamKeepAlive is the SSE comment interval before a first token.
	StreamKeepAlive time.Duration          `yaml:"stream_keepalive"`
	Log             LogConfig              `yaml:"log"`
	Tiers           map[string]TierConfig  `yaml:"tiers"`
	Models          map[string]ModelConfig `yaml:"models"`
	Keys            []KeyConfig            `yaml:"keys"`
	// Projects group keys under limits that hold across all of them.
	Projects map[string]ProjectConfig `yaml:"projects"`
	Breaker  BreakerConfig            `yaml:"breaker"`
	CORS     CORSConfig               `yaml:"cors"`
	// Webhooks receive budget alerts.
	Webhooks []WebhookConfig `yaml:"webhooks"`
	// AdminTokens are admin tokens held by their digests, beside
	// OBOL_ADMIN_TOKEN and OBOL_ADMIN_TOKENS (admintokens.go).
	AdminTokens []AdminTokenConfig `yaml:"admin_tokens"`
	Alerts      AlertsConfig       `yaml:"alerts"`
	// Reload re-reads the file when it changes (reload.go).
	Reload ReloadConfig `yaml:"reload"`
	// RequestLog bounds the embedded store's request log (PostgreSQL's
	// is postgres.request_log_days).
	RequestLog RequestLogConfig `yaml:"request_log"`

	// path is the file it was read from and addrFlag serve's -addr, for
	// a reload.
	path, addrFlag string
}

// RequestLogConfig bounds the embedded store's request log: days kept
// (default 7; 0: none) and entries at most (default 100,000).
type RequestLogConfig struct {
	Days       *int `yaml:"days"`
	MaxEntries int  `yaml:"max_entries"`
}

// ReloadConfig sets how the configuration is re-read without a restart
// (besides SIGHUP and POST /v1/admin/reload).
type ReloadConfig struct {
	// Watch polls the file every Interval (default 2s) and reloads it
	// when its contents change: a mounted ConfigMap changes so.
	Watch    bool          `yaml:"watch"`
	Interval time.Duration `yaml:"interval"`
}

// AlertsConfig sets how budget alerts are delivered.
type AlertsConfig struct {
	// RetryFor is how long a delivery is retried, with backoff up to a
	// minute, before it is kept as failed; 0 means 24 hours.
	RetryFor time.Duration `yaml:"retry_for"`
}

// WebhookConfig is a receiver of budget alerts: events are POSTed to URL
// signed with the secret in the environment variable SecretEnv.
type WebhookConfig struct {
	URL       string `yaml:"url"`
	SecretEnv string `yaml:"secret_env"`
}

// CORSConfig lets web pages of other origins call the gateway.
type CORSConfig struct {
	// AllowedOrigins are origins, or patterns with one "*" (a port, a
	// subdomain, or "*" for any); none by default.
	AllowedOrigins []string `yaml:"allowed_origins"`
}

// RedisConfig locates the counters replicas share; empty: in process.
type RedisConfig struct {
	// URL is go-redis's: redis://[user:pass@]host:port/db (rediss:// for
	// TLS, unix:// for a socket); Cluster and Sentinel take more nodes as
	// ?addr=host:port and Sentinel its ?master_name=.
	URL string `yaml:"url"`
	// Mode is single (default), cluster or sentinel.
	Mode string `yaml:"mode"`
	// Prefix starts every key obol writes (default "obol:").
	Prefix string `yaml:"prefix"`
	// Timeout bounds each call (default 250ms); past it the fail mode decides.
	Timeout time.Duration `yaml:"timeout"`
	// FailMode is open (local per-replica limits) or closed (503) in an outage.
	FailMode string `yaml:"fail_mode"`
	// Replicas share the Redis; failing open, each admits 1/Replicas.
	Replicas int `yaml:"replicas"`
	// Slices is how long an allowance slice a replica takes admits
	// (default 1s), or "off": every request is decided in Redis.
	Slices string `yaml:"slices"`
	// sliceActive is Slices read; 0 is off.
	sliceActive time.Duration
}

// PostgresConfig locates the system of record of several replicas: keys
// and the usage ledger. Empty: the embedded store under DataDir.
type PostgresConfig struct {
	URL string `yaml:"url"` // postgres://user:pass@host:5432/db?sslmode=…
	// RequestLogDays keeps a row per request for this many days (default
	// 35; 0 keeps none).
	RequestLogDays *int          `yaml:"request_log_days"`
	Timeout        time.Duration `yaml:"timeout"` // bounds connecting (default 5s)
}

func (p *PostgresConfig) check(redisURL string) error {
	if p.RequestLogDays == nil {
		days := 35
		p.RequestLogDays = &days
	}
	if *p.RequestLogDays < 0 || p.Timeout < 0 {
		return invalid("postgres", "request_log_days and timeout must not be negative")
	}
	if p.Timeout == 0 {
		p.Timeout = 5 * time.Second
	}
	if p.URL == "" {
		if redisURL != "" {
			return invalid("postgres.url", "redis.url (several replicas) needs postgres.url too: PostgreSQL keeps the keys and the usage ledger, Redis only counters; add postgres: {url: \"postgres://…\"}")
		}
		return nil
	}
	if u, err := url.Parse(p.URL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return invalid("postgres.url", "want postgres://user:password@host:5432/database, got %q", redactURL(p.URL))
	}
	return nil
}

// LogConfig sets the log's level (debug, info, warn, error) and format (json, text).
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// TierConfig is a tier's limits; 0 means unlimited.
type TierConfig struct {
	RPM         int64 `yaml:"rpm"`
	TPM         int64 `yaml:"tpm"`
	TPD         int64 `yaml:"tpd"`
	Concurrency int64 `yaml:"concurrency"` // requests in flight
}

// KeyConfig is a static API key; only the SHA-256 of its secret is kept.
type KeyConfig struct {
	ID     string   `yaml:"id"`
	Name   string   `yaml:"name"`
	Tier   string   `yaml:"tier"`
	SHA256 string   `yaml:"sha256"`
	Models []string `yaml:"models"`
	// Limits override the tier's, each one on its own; 0 means unlimited.
	Limits keys.Limits `yaml:"limits"`
	// Scopes limit what the key may do (chat, chat:stream, models,
	// usage); empty means everything.
	Scopes []string `yaml:"scopes"`
	// Project is the id of the project the key belongs to, if any.
	Project string `yaml:"project"`
	// Budget is the key's own monthly budget.
	Budget *BudgetConfig `yaml:"budget"`
}

// ProjectConfig is a project: a name for people, limits and a monthly
// budget that hold across all its keys, whichever key drives them (0 or
// absent: none).
type ProjectConfig struct {
	Name     string            `yaml:"name"`
	Limits   keys.Limits       `yaml:"limits"`
	Budget   *BudgetConfig     `yaml:"budget"`
	Metadata map[string]string `yaml:"metadata"`
}

// BudgetConfig is a monthly budget (UTC calendar month) in USD, and the
// fractions of it whose crossing sends an alert to the webhooks (absent:
// 0.5, 0.8 and 1.0; [] none).
type BudgetConfig struct {
	Monthly USD       `yaml:"monthly"`
	AlertAt []float64 `yaml:"alert_at"`
	// Strict: spend never passes the budget (keys.Budget.Strict).
	Strict bool `yaml:"strict"`
}

// USD is an amount of dollars read exactly from its decimal digits, with
// no float step.
type USD money.Money

// UnmarshalYAML reads a decimal number of dollars.
func (u *USD) UnmarshalYAML(n *yaml.Node) error {
	m, err := money.ParseUSD(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*u = USD(m)
	return nil
}

// budget is the configured budget as keys take it.
func (b *BudgetConfig) budget() *keys.Budget {
	if b == nil {
		return nil
	}
	return &keys.Budget{Monthly: money.Money(b.Monthly), AlertAt: b.AlertAt, Strict: b.Strict}
}

// checkProjects validates the projects' ids and limits.
func (c *Config) checkProjects() error {
	for _, id := range sortedKeys(c.Projects) {
		p := c.Projects[id]
		l := p.Limits
		if !keys.ProjectID.MatchString(id) {
			return invalid("projects."+id, "a project id is 1 to 64 of a-z, 0-9, _ and -")
		}
		if o := l.Over(quota.Limits{}); o.RPM < 0 || o.TPM < 0 || o.TPD < 0 || o.Concurrency < 0 {
			return invalid("projects."+id+".limits", "limits must be 0 (unlimited) or positive")
		}
		if err := keys.CheckProject(projectOf(id, p)); err != nil {
			var ie *keys.InvalidError
			if errors.As(err, &ie) {
				return invalid("projects."+id+"."+ie.Field, "%s", ie.Msg)
			}
			return err
		}
	}
	return nil
}

// checkWebhooks validates the webhooks' URLs (their secrets are read
// when the app is built).
func (c *Config) checkWebhooks() error {
	for i, w := range c.Webhooks {
		f := fmt.Sprintf("webhooks[%d]", i)
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid(f+".url", "want an http:// or https:// URL, got %q", w.URL)
		}
		if w.SecretEnv == "" {
			return invalid(f+".secret_env", "name the environment variable that holds the signing secret")
		}
	}
	if c.Alerts.RetryFor < 0 {
		return invalid("alerts.retry_for", "must not be negative (0: the default, 24h)")
	}
	return nil
}

// check fills defaults and validates, naming the field at fault.
func (c *Config) check() error {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8080"
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		return invalid("listen", "want host:port, got %q", c.Listen)
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			return invalid("admin_listen", "want host:port, got %q", c.AdminListen)
		}
	}
	if c.Pprof && c.AdminListen == "" {
		return invalid("pprof", "needs admin_listen: profiles are never served on the public listener")
	}
	if c.DataDir == "" {
		c.DataDir = "./data"
	}
	if err := c.Redis.check(); err != nil {
		return err
	}
	if err := c.Postgres.check(c.Redis.URL); err != nil {
		return err
	}
	if err := c.checkDurations(); err != nil {
		return err
	}
	if c.Breaker.Failures < 0 || c.Breaker.Probes < 0 || c.Breaker.Cooldown < 0 {
		return invalid("breaker", "failures, cooldown and probes must not be negative")
	}
	if err := oneOf("log.level", &c.Log.Level, "info", "debug", "info", "warn", "error"); err != nil {
		return err
	}
	if err := oneOf("log.format", &c.Log.Format, "json", "json", "text"); err != nil {
		return err
	}
	if len(c.Tiers) == 0 {
		c.Tiers = map[string]TierConfig{}
		for name, lim := range quota.DefaultTiers {
			c.Tiers[name] = TierConfig{RPM: lim.RPM, TPM: lim.TPM, TPD: lim.TPD, Concurrency: lim.Concurrency}
		}
	}
	for _, name := range sortedKeys(c.Tiers) {
		t := c.Tiers[name]
		if t.RPM < 0 || t.TPM < 0 || t.TPD < 0 || t.Concurrency < 0 {
			return invalid("tiers."+name, "limits must be 0 (unlimited) or positive")
		}
	}
	if err := c.checkProjects(); err != nil {
		return err
	}
	if err := c.checkWebhooks(); err != nil {
		return err
	}
	if err := c.checkAdminTokens(); err != nil {
		return err
	}
	if d := c.RequestLog.Days; (d != nil && *d < 0) || c.RequestLog.MaxEntries < 0 {
		return invalid("request_log", "days and max_entries must not be negative")
	}
	if err := c.checkModels(); err != nil {
		return err
	}
	for i, o := range c.CORS.AllowedOrigins {
		if o != "*" && (!strings.Contains(o, "://") || strings.Count(o, "*") > 1 || strings.HasSuffix(o, "/")) {
			return invalid(fmt.Sprintf("cors.allowed_origins[%d]", i), "want an origin such as https://app.example.com or a pattern such as http://localhost:* (one *, no path), got %q", o)
		}
	}
	return c.checkKeys()
}

// checkKeys checks the configuration's API keys: ids and secrets used
// once, tiers, models and scopes that exist, limits not negative.
func (c *Config) checkKeys() error {
	ids := map[string]bool{}
	digests := map[string]bool{}
	for i, k := range c.Keys {
		f := fmt.Sprintf("keys[%d]", i)
		if k.ID == "" {
			return invalid(f+".id", "required")
		}
		f = fmt.Sprintf("keys[%d] (%s)", i, k.ID)
		if ids[k.ID] {
			return invalid(f+".id", "used twice")
		}
		ids[k.ID] = true
		if _, ok := c.Tiers[k.Tier]; !ok {
			return invalid(f+".tier", "unknown tier %q; tiers: %s", k.Tier, strings.Join(sortedKeys(c.Tiers), ", "))
		}
		d, err := hex.DecodeString(k.SHA256)
		if err != nil || len(d) != sha256.Size {
			return invalid(f+".sha256", "want the 64 hex digits of the secret's SHA-256 (e.g. printf %%s \"$SECRET\" | sha256sum)")
		}
		if digests[strings.ToLower(k.SHA256)] {
			return invalid(f+".sha256", "the same secret as another key")
		}
		digests[strings.ToLower(k.SHA256)] = true
		for j, m := range k.Models {
			if _, ok := c.Models[m]; !ok {
				return invalid(fmt.Sprintf("%s.models[%d]", f, j), "unknown model %q", m)
			}
		}
		for name, v := range map[string]*int64{"rpm": k.Limits.RPM, "tpm": k.Limits.TPM, "tpd": k.Limits.TPD, "concurrency": k.Limits.Concurrency} {
			if v != nil && *v < 0 {
				return invalid(f+".limits."+name, "must be 0 (unlimited) or positive")
			}
		}
		if _, ok := c.Projects[k.Project]; k.Project != "" && !ok {
			return invalid(f+".project", "unknown project %q; projects: %s", k.Project, strings.Join(sortedKeys(c.Projects), ", "))
		}
		var ie *keys.InvalidError
		if err := keys.CheckBudget(k.Budget.budget(), "budget"); errors.As(err, &ie) {
			return invalid(f+"."+ie.Field, "%s", ie.Msg)
		}
		for j, sc := range k.Scopes {
			if !slices.Contains(keys.AllScopes, sc) {
				return invalid(fmt.Sprintf("%s.scopes[%d]", f, j), "unknown scope %q; scopes: %s", sc, strings.Join(keys.AllScopes, ", "))
			}
		}
	}
	return nil
}

// checkDurations checks the sizes and times that must not be negative,
// and gives the shutdown's their defaults.
func (c *Config) checkDurations() error {
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"shutdown_grace", c.ShutdownGrace < 0}, {"max_body_bytes", c.MaxBodyBytes < 0},
		{"body_timeout", c.BodyTimeout < 0}, {"stream_keepalive", c.StreamKeepAlive < 0},
	} {
		if f.negative {
			return invalid(f.name, "must not be negative")
		}
	}
	if c.ShutdownDrain == nil {
		d := 5 * time.Second
		c.ShutdownDrain = &d
	} else if *c.ShutdownDrain < 0 {
		return invalid("shutdown_drain", "must not be negative (0s: no drain)")
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	return nil
}
