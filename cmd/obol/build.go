package main

import (
	"encoding/hex"
	"fmt"

	"github.com/obol/obol/alerts"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// What the configuration builds: the model catalog, the tiers and the
// configuration's keys, as the packages behind the gateway take them.

// catalogOf builds the model catalog, reading backend keys from the environment.
func catalogOf(c *Config, getenv func(string) string) (*models.Catalog, error) {
	var ms []models.Model
	for _, name := range sortedKeys(c.Models) {
		mc := c.Models[name]
		m := models.Model{
			Name: name, Description: mc.Description, ContextWindow: mc.ContextWindow,
			MaxOutputTokens: mc.MaxOutputTokens, Vision: mc.Vision, ImageTokens: mc.ImageTokens,
			Timeouts: models.Timeouts(mc.Timeouts), MaxAttempts: mc.MaxAttempts, Aliases: mc.Aliases,
		}
		for _, api := range mc.Serves {
			m.APIs = append(m.APIs, map[string]models.API{
				"chat": models.ChatAPI, "completions": models.CompletionsAPI, "embeddings": models.EmbeddingsAPI}[api])
		}
		for i, b := range mc.Backends {
			key := ""
			if b.APIKeyEnv != "" {
				if key = getenv(b.APIKeyEnv); key == "" {
					return nil, invalid(fmt.Sprintf("models.%s.backends[%d].api_key_env", name, i), "the environment variable %s is not set", b.APIKeyEnv)
				}
			}
			m.Backends = append(m.Backends, models.Backend{Name: b.backendName(), URL: b.URL, Model: b.Model, APIKey: key, Dialect: models.Dialect(b.API),
				Weight: b.Weight, Priority: b.Priority, MaxConcurrency: b.MaxConcurrency, ContinuousUsage: b.ContinuousUsage, H2C: b.H2C})
		}
		ms = append(ms, m)
	}
	return models.NewCatalog(ms)
}

// tiersOf is the configured tiers as quota sees them.
func tiersOf(c *Config) quota.Tiers {
	t := make(quota.Tiers, len(c.Tiers))
	for name, tc := range c.Tiers {
		t[name] = quota.Limits{RPM: tc.RPM, TPM: tc.TPM, TPD: tc.TPD, Concurrency: tc.Concurrency}
	}
	return t
}

// projectsOf is the configured projects, as keys resolve them.
func projectsOf(c *Config) keys.Projects {
	p := make(keys.Projects, len(c.Projects))
	for id, pc := range c.Projects {
		p[id] = projectOf(id, pc)
	}
	return p
}

// projectOf is a configured project as keys take it (0 is unlimited).
func projectOf(id string, pc ProjectConfig) *keys.Project {
	return &keys.Project{ID: id, Name: pc.Name, Config: true, Budget: pc.Budget.budget(), Metadata: pc.Metadata, Limits: pc.Limits}
}

// staticKeysOf is the file's keys as the key registry takes them.
func staticKeysOf(c *Config) []keys.Static {
	out := make([]keys.Static, 0, len(c.Keys))
	for _, k := range c.Keys {
		s := keys.Static{ID: k.ID, Name: k.Name, Tier: k.Tier, Models: k.Models, Scopes: k.Scopes,
			Limits: k.Limits, Project: k.Project, Budget: k.Budget.budget()}
		hex.Decode(s.SHA256[:], []byte(k.SHA256))
		out = append(out, s)
	}
	return out
}

// pricesFrom is the model's prices as usage takes them, in time order; f
// names the model's field for errors.
func pricesFrom(m ModelConfig, f string) (money.Prices, error) {
	var out money.Prices
	conv := func(field string, pc PriceConfig) error {
		var p money.Price
		var ok bool
		for _, v := range []struct {
			name string
			usd  *float64
			dst  *money.Money
		}{{"input", &pc.Input, &p.Input}, {"cached_input", pc.CachedInput, &p.CachedInput}, {"cache_write", pc.CacheWrite, &p.CacheWrite},
			{"cache_write_1h", pc.CacheWrite1h, &p.CacheWrite1h}, {"output", &pc.Output, &p.Output}} {
			if v.usd == nil {
				continue // a default, below
			}
			if *v.dst, ok = money.FromPerMillion(*v.usd); !ok {
				return invalid(field+"."+v.name, "a price is USD per million tokens, ≥ 0, to the millionth of a dollar; got %v", *v.usd)
			}
		}
		if pc.CachedInput == nil {
			p.CachedInput = p.Input
		}
		if pc.CacheWrite == nil {
			p.CacheWrite = p.Input.Times(5, 4)
		}
		if pc.CacheWrite1h == nil {
			p.CacheWrite1h = p.Input.Times(2, 1)
		}
		p.From = pc.From
		out = append(out, p)
		return nil
	}
	if m.Price != nil {
		if !m.Price.From.IsZero() {
			return nil, invalid(f+".price.from", "the base price has no from: dated changes go in prices")
		}
		if err := conv(f+".price", *m.Price); err != nil {
			return nil, err
		}
	}
	for i, pc := range m.Prices {
		field := fmt.Sprintf("%s.prices[%d]", f, i)
		if pc.From.IsZero() {
			return nil, invalid(field+".from", "a dated price needs from, an RFC 3339 time such as 2026-12-01T00:00:00Z")
		}
		if err := conv(field, pc); err != nil {
			return nil, err
		}
	}
	out.Sort()
	return out, nil
}

// pricesOf is every model's prices.
func pricesOf(c *Config) map[string]money.Prices {
	out := make(map[string]money.Prices, len(c.Models))
	for name, mc := range c.Models {
		out[name], _ = pricesFrom(mc, "models."+name) // checked at load
	}
	return out
}

// webhooksOf is the configured webhooks with their secrets from the
// environment; a secret not set is a configuration error.
func webhooksOf(c *Config, getenv func(string) string) ([]alerts.Webhook, error) {
	var out []alerts.Webhook
	for i, w := range c.Webhooks {
		secret := getenv(w.SecretEnv)
		if secret == "" {
			return nil, &configError{msg: fmt.Sprintf("config: webhooks[%d].secret_env: the environment variable %s is not set", i, w.SecretEnv)}
		}
		if len(secret) < alerts.MinSecret {
			return nil, &configError{msg: fmt.Sprintf("config: webhooks[%d].secret_env: the secret in %s is under %d characters (openssl rand -hex 32 makes one)",
				i, w.SecretEnv, alerts.MinSecret)}
		}
		out = append(out, alerts.Webhook{URL: w.URL, Secret: secret})
	}
	return out, nil
}
