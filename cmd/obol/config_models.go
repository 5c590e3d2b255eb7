package main

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/obol/obol/models"
)

// The models' configuration: each public model, its backends, prices
// and timeouts, and every backend's breaker.

// ModelConfig is one public model.
type ModelConfig struct {
	ContextWindow   int    `yaml:"context_window"`
	Description     string `yaml:"description"`
	Vision          bool   `yaml:"vision"`
	MaxOutputTokens int    `yaml:"max_output_tokens"`
	// ImageTokens is the most one image can cost on its backends.
	ImageTokens int            `yaml:"image_tokens"`
	Timeouts    TimeoutsConfig `yaml:"timeouts"`
	// MaxAttempts bounds the backends one request tries (failover);
	// 0 means all of them, at most 3.
	MaxAttempts int `yaml:"max_attempts"`
	// Serves are the APIs its backends answer: chat, completions (legacy),
	// embeddings; default chat.
	Serves []string `yaml:"serves"`
	// Price is in USD per million tokens; Prices are dated changes.
	Price    *PriceConfig    `yaml:"price"`
	Prices   []PriceConfig   `yaml:"prices"`
	Backends []BackendConfig `yaml:"backends"`
	// Aliases are other names clients may call it by, such as the model
	// ids a client asks for by default: exact, or a prefix ending in "*".
	Aliases []string `yaml:"aliases"`
}

// PriceConfig is a model's price in USD per million tokens, from a time
// on (From; unset on price:, required on a dated change).
type PriceConfig struct {
	From        time.Time `yaml:"from"`
	Input       float64   `yaml:"input"`
	CachedInput *float64  `yaml:"cached_input"` // cache reads; default: input
	// CacheWrite and CacheWrite1h are prompt tokens written to the
	// backend's cache for five minutes (default 1.25 × input) and for an
	// hour (default 2 × input), as Anthropic bills them.
	CacheWrite   *float64 `yaml:"cache_write"`
	CacheWrite1h *float64 `yaml:"cache_write_1h"`
	Output       float64  `yaml:"output"`
}

// BreakerConfig sets every backend's circuit breaker.
type BreakerConfig struct {
	// Failures in a row that open it (default 5).
	Failures int `yaml:"failures"`
	// Cooldown before an open breaker lets a probe through (default 10s).
	Cooldown time.Duration `yaml:"cooldown"`
	// Probes let through at once while half-open (default 1).
	Probes int `yaml:"probes"`
}

// TimeoutsConfig bounds upstream calls; unset fields take the defaults.
type TimeoutsConfig struct {
	Connect    time.Duration `yaml:"connect"`
	FirstToken time.Duration `yaml:"first_token"`
	Idle       time.Duration `yaml:"idle"`
	Total      time.Duration `yaml:"total"`
}

// BackendConfig is one OpenAI-compatible server.
type BackendConfig struct {
	Name      string `yaml:"name"`
	URL       string `yaml:"url"`
	Model     string `yaml:"model"`
	APIKeyEnv string `yaml:"api_key_env"`
	// Weight is its share among backends of its priority (default 1).
	Weight int `yaml:"weight"`
	// Priority: 0 first; higher only when every lower one is unavailable.
	Priority int `yaml:"priority"`
	// MaxConcurrency caps its requests in flight; 0 is no cap.
	MaxConcurrency int `yaml:"max_concurrency"`
	// ContinuousUsage: vLLM's usage in every stream chunk, when asked.
	ContinuousUsage bool `yaml:"continuous_usage_stats"`
	// H2C: the backend speaks HTTP/2 without TLS (prior knowledge).
	H2C bool `yaml:"h2c"`
	// API is what it speaks: openai (the default) or anthropic (the
	// Messages API; its key goes as x-api-key).
	API string `yaml:"api"`
}

var modelName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (m ModelConfig) check(f, name string) error {
	if !modelName.MatchString(name) {
		return invalid(f, "a model name is lower-case letters, digits, '.', '_' or '-'")
	}
	if m.ContextWindow <= 0 {
		return invalid(f+".context_window", "must be a positive number of tokens")
	}
	if _, err := pricesFrom(m, f); err != nil {
		return err
	}
	for i, api := range m.Serves {
		if !slices.Contains([]string{"chat", "completions", "embeddings"}, api) {
			return invalid(fmt.Sprintf("%s.serves[%d]", f, i), "want chat, completions or embeddings, got %q", api)
		}
	}
	if m.MaxOutputTokens < 0 || m.MaxOutputTokens > m.ContextWindow {
		return invalid(f+".max_output_tokens", "must be between 0 (default) and the context window")
	}
	if m.ImageTokens < 0 {
		return invalid(f+".image_tokens", "must not be negative (0: the default, %d)", models.DefaultImageTokens)
	}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"connect", m.Timeouts.Connect}, {"first_token", m.Timeouts.FirstToken}, {"idle", m.Timeouts.Idle}, {"total", m.Timeouts.Total}} {
		if t.d < 0 {
			return invalid(f+".timeouts."+t.name, "must not be negative")
		}
	}
	for i, a := range m.Aliases {
		if prefix, _ := strings.CutSuffix(a, "*"); a == "" || strings.Contains(prefix, "*") {
			return invalid(fmt.Sprintf("%s.aliases[%d]", f, i), "want a model id, or a prefix ending in one * (claude-haiku-*), got %q", a)
		}
	}
	if len(m.Backends) == 0 {
		return invalid(f+".backends", "at least one backend is required")
	}
	if m.MaxAttempts < 0 {
		return invalid(f+".max_attempts", "must not be negative")
	}
	names := map[string]bool{}
	for i, b := range m.Backends {
		bf := fmt.Sprintf("%s.backends[%d]", f, i)
		u, err := url.Parse(b.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return invalid(bf+".url", "want an http(s) base URL such as http://127.0.0.1:9000/v1, got %q", b.URL)
		}
		if b.Model == "" {
			return invalid(bf+".model", "required: the backend's own model name")
		}
		if b.API != "" && b.API != string(models.OpenAI) && b.API != string(models.Anthropic) {
			return invalid(bf+".api", "want openai (the default) or anthropic, got %q", b.API)
		}
		if b.API == string(models.Anthropic) && slices.ContainsFunc(m.Serves, func(s string) bool { return s != "chat" }) {
			return invalid(bf+".api", "an Anthropic backend serves chat alone; this model serves %s", strings.Join(m.Serves, ", "))
		}
		if b.H2C && !strings.HasPrefix(b.URL, "http://") {
			return invalid(bf+".h2c", "is HTTP/2 without TLS, for an http:// URL (an https:// backend negotiates HTTP/2 by itself)")
		}
		if b.API == string(models.Anthropic) && b.ContinuousUsage {
			return invalid(bf+".continuous_usage_stats", "is vLLM's Chat Completions option; an Anthropic backend reports usage in its events")
		}
		for name, v := range map[string]int{"weight": b.Weight, "priority": b.Priority, "max_concurrency": b.MaxConcurrency} {
			if v < 0 {
				return invalid(bf+"."+name, "must not be negative")
			}
		}
		n := b.backendName()
		if names[n] {
			return invalid(bf+".name", "%q is used twice", n)
		}
		names[n] = true
	}
	return nil
}

// backendName is the backend's name, derived from its URL when unset.
func (b BackendConfig) backendName() string {
	if b.Name != "" {
		return b.Name
	}
	if u, err := url.Parse(b.URL); err == nil {
		return u.Host + strings.TrimSuffix(u.Path, "/")
	}
	return b.URL
}

// checkModels checks each model and that an alias names one model and no
// model's own name.
func (c *Config) checkModels() error {
	if len(c.Models) == 0 {
		return invalid("models", "at least one model is required")
	}
	aliases := map[string]string{}
	for _, name := range sortedKeys(c.Models) {
		if err := c.Models[name].check("models."+name, name); err != nil {
			return err
		}
		for i, a := range c.Models[name].Aliases {
			f := fmt.Sprintf("models.%s.aliases[%d]", name, i)
			if _, isModel := c.Models[a]; isModel {
				return invalid(f, "%q is a model's name", a)
			}
			if other, dup := aliases[a]; dup {
				return invalid(f, "%q is also an alias of %s", a, other)
			}
			aliases[a] = name
		}
	}
	return nil
}
