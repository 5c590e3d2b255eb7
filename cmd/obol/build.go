package main

import (
	"encoding/hex"
	"fmt"

	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
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
			MaxOutputTokens: mc.MaxOutputTokens, Vision: mc.Vision,
			Timeouts: models.Timeouts(mc.Timeouts), MaxAttempts: mc.MaxAttempts,
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
			m.Backends = append(m.Backends, models.Backend{Name: b.backendName(), URL: b.URL, Model: b.Model, APIKey: key,
				Weight: b.Weight, Priority: b.Priority, MaxConcurrency: b.MaxConcurrency, ContinuousUsage: b.ContinuousUsage})
		}
		ms = append(ms, m)
	}
	return models.NewCatalog(ms)
}

// tiersOf is the configured tiers as quota sees them.
func tiersOf(c *Config) quota.Tiers {
	t := make(quota.Tiers, len(c.Tiers))
	for name, tc := range c.Tiers {
		t[name] = quota.Limits(tc)
	}
	return t
}

// staticKeysOf is the file's keys as the key registry takes them.
func staticKeysOf(c *Config) []keys.Static {
	out := make([]keys.Static, 0, len(c.Keys))
	for _, k := range c.Keys {
		s := keys.Static{ID: k.ID, Name: k.Name, Tier: k.Tier, Models: k.Models, Scopes: k.Scopes,
			Limits: keys.Limits(k.Limits)}
		hex.Decode(s.SHA256[:], []byte(k.SHA256))
		out = append(out, s)
	}
	return out
}
