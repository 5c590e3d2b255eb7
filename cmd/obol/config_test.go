package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/keys"
	"github.com/obol/obol/quota"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// TestBadConfigs: each fixture under testdata/bad is refused with a
// message naming the field at fault.
func TestBadConfigs(t *testing.T) {
	tests := map[string]string{
		"unknown-top-key":        "field lisen not found",
		"unknown-model-key":      "field contxt not found",
		"no-models":              "models: at least one model",
		"empty":                  "the file is empty",
		"bad-listen":             "listen: want host:port",
		"no-backends":            "models.hermes.backends: at least one backend",
		"bad-backend-url":        "models.hermes.backends[0].url",
		"bad-backend-api":        "models.hermes.backends[0].api: want openai (the default) or anthropic",
		"anthropic-embeddings":   "models.hermes.backends[0].api: an Anthropic backend serves chat alone",
		"no-backend-model":       "models.hermes.backends[0].model: required",
		"zero-context":           "models.hermes.context_window",
		"bad-model-name":         "models.Hermes Pro: a model name",
		"dup-backend-name":       "models.hermes.backends[1].name",
		"negative-timeout":       "models.hermes.timeouts.idle",
		"bad-duration":           "time.Duration",
		"negative-tier":          "tiers.free",
		"unknown-tier":           `keys[0] (k1).tier: unknown tier "gold"`,
		"bad-sha":                "keys[0] (k1).sha256",
		"dup-key-id":             "keys[1] (k1).id: used twice",
		"missing-key-id":         "keys[0].id: required",
		"key-unknown-model":      `keys[0] (k1).models[0]: unknown model "pluto"`,
		"key-unknown-scope":      `keys[0] (k1).scopes[1]: unknown scope "admin"`,
		"bad-admin-listen":       "admin_listen: want host:port",
		"pprof-no-admin":         "pprof: needs admin_listen",
		"negative-weight":        "models.hermes.backends[0].weight: must not be negative",
		"bad-log-level":          "log.level",
		"bad-redis-url":          "redis.url",
		"wrong-type":             "max_body_bytes",
		"bad-redis-mode":         "redis.mode: want single, cluster or sentinel",
		"bad-fail-mode":          "redis.fail_mode: want open or closed",
		"bad-slices":             "redis.slices: want a duration from 10ms to 10s",
		"bad-h2c":                "models.hermes.backends[0].h2c: is HTTP/2 without TLS, for an http:// URL",
		"sentinel-no-master":     "redis.url: sentinel URL: ?master_name= is required",
		"negative-key-limit":     "keys[0] (k1).limits.tpm",
		"redis-without-postgres": "postgres.url: redis.url (several replicas) needs postgres.url too",
		"bad-postgres-url":       "postgres.url: want postgres://",
		"bad-serves":             "models.hermes.serves[0]: want chat, completions or embeddings",
		"bad-alias":              "models.hermes.aliases[0]: want a model id, or a prefix ending in one *",
		"dup-alias":              `models.pluto.aliases[0]: "claude-*" is also an alias of hermes`,
		"bad-cors-origin":        "cors.allowed_origins[0]",
		"key-unknown-project":    `keys[0] (k1).project: unknown project "beta"; projects: acme`,
		"bad-project":            "projects.acme.limits: limits must be 0 (unlimited) or positive",
		"project-bad-alerts":     "projects.acme.budget.alert_at: thresholds are fractions of the budget in (0, 10], ascending",
		"project-bad-budget":     `amount "a lot": not a number`,
		"key-negative-budget":    "keys[0] (k1).budget.monthly: a budget is an amount of USD ≥ 0",
		"webhook-bad-url":        "webhooks[0].url: want an http:// or https:// URL",
		"webhook-no-secret":      "webhooks[0].secret_env: name the environment variable",
	}
	files, _ := filepath.Glob("testdata/bad/*.yaml")
	if len(files) != len(tests) {
		t.Errorf("%d fixtures, %d expectations: every fixture needs one", len(files), len(tests))
	}
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(name, func(t *testing.T) {
			want, ok := tests[name]
			if !ok {
				t.Fatal("no expectation for this fixture")
			}
			r, err := os.Open(f)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = loadConfig(r, envMap(nil))
			if err == nil {
				t.Fatal("accepted")
			}
			if _, isConfig := err.(*configError); !isConfig {
				t.Errorf("error %T is not a configError (exit 2)", err)
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		})
	}
}

func TestShippedConfigsLoad(t *testing.T) {
	files, _ := filepath.Glob("../../configs/*.yaml")
	if len(files) == 0 {
		t.Fatal("no configs")
	}
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(r, envMap(map[string]string{"OBOL_BACKEND_KEY": "k", "REDIS_URL": "redis://127.0.0.1:6379/0", "POSTGRES_URL": "postgres://postgres@127.0.0.1:5432/obol"}))
		r.Close()
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if _, err := catalogOf(cfg, envMap(map[string]string{"OBOL_BACKEND_KEY": "k", "OPENAI_API_KEY": "k", "TOGETHER_API_KEY": "k", "ANTHROPIC_API_KEY": "k"})); err != nil {
			t.Errorf("%s: catalog: %v", f, err)
		}
	}
}

func TestDemoConfigHasFiveModelsAndThreeTiers(t *testing.T) {
	r, err := os.Open("../../configs/demo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg, err := loadConfig(r, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sortedKeys(cfg.Models), ","); got != "charon,hermes,minos,pluto,styx" {
		t.Errorf("models %s", got)
	}
	if !cfg.Models["charon"].Vision || cfg.Models["hermes"].Vision {
		t.Error("only charon declares vision")
	}
	tiers := map[string]bool{}
	for _, k := range cfg.Keys {
		tiers[k.Tier] = true
	}
	if len(tiers) != 3 {
		t.Errorf("demo keys cover tiers %v", tiers)
	}
}

func TestExpandEnv(t *testing.T) {
	get := envMap(map[string]string{"A": "alpha", "EMPTY": ""})
	tests := []struct{ in, want string }{
		{"x: ${A}", "x: alpha"},
		{"x: ${MISSING}", "x: "},
		{"x: ${MISSING:-fallback}", "x: fallback"},
		{"x: ${EMPTY:-fallback}", "x: fallback"},
		{"x: ${A:-fallback}", "x: alpha"},
		{"x: $A and $$", "x: $A and $$"},
	}
	for _, tt := range tests {
		if got := string(expandEnv([]byte(tt.in), get)); got != tt.want {
			t.Errorf("expandEnv(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestConfigDefaultsAndBackendKeys(t *testing.T) {
	r, _ := os.Open("testdata/good.yaml")
	defer r.Close()
	cfg, err := loadConfig(r, envMap(map[string]string{"TEST_UPSTREAM": "http://127.0.0.1:9/v1"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ShutdownGrace != 10*time.Second || cfg.DataDir != "./data" || cfg.Tiers["free"].RPM != 20 || cfg.Tiers["team"].TPD != 0 {
		t.Errorf("defaults: %+v", cfg)
	}
	cat, err := catalogOf(cfg, envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if m := cat.Get("hermes"); m.MaxOutputTokens != 4096 || m.Backends[0].Name != "127.0.0.1:9/v1" {
		t.Errorf("model %+v", m)
	}
	if cfg.Redis.Mode != "single" || cfg.Redis.FailMode != "open" || cfg.Redis.Prefix != "obol:" || cfg.Redis.Timeout != 250*time.Millisecond ||
		cfg.Redis.sliceActive != time.Second {
		t.Errorf("redis defaults: %+v", cfg.Redis)
	}
	for in, want := range map[string]time.Duration{"off": 0, "250ms": 250 * time.Millisecond, "": time.Second} {
		r := RedisConfig{Slices: in}
		if err := r.checkSlices(); err != nil || r.sliceActive != want {
			t.Errorf("redis.slices %q: %v, %v; want %v", in, r.sliceActive, err, want)
		}
	}
	cfg.Models["hermes"].Backends[0].APIKeyEnv = "NOT_SET_ANYWHERE"
	if _, err := catalogOf(cfg, envMap(nil)); err == nil || !strings.Contains(err.Error(), "models.hermes.backends[0].api_key_env") {
		t.Errorf("unset backend key env: %v", err)
	}
}

// TestKeyLimits: a key has its tier's limits, each overridable on its own,
// 0 meaning unlimited.
func TestKeyLimits(t *testing.T) {
	const src = `
tiers: {free: {rpm: 20, tpm: 40000, tpd: 250000}}
models: {hermes: {context_window: 1000, backends: [{url: "http://127.0.0.1:9000/v1", model: "m"}]}}
keys:
  - {id: plain, tier: free, sha256: "bac49ce75937ef3db9b97fe5afc56953adaa1e48dd7e1dc724c7eab205da1279"}
  - {id: custom, tier: free, sha256: "30a662f280f0cca377d1b9e1368c7c086a5e5d2026115710e980734d1ddf5928", limits: {rpm: 5, tpd: 0}}
`
	cfg, err := loadConfig(strings.NewReader(src), envMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := keys.NewRegistry(context.Background(), nil, keys.Options{Static: staticKeysOf(cfg), Tiers: tiersOf(cfg)})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		secret string
		want   quota.Limits
	}{
		{"sk-demo-free-4f1c9a", quota.Limits{RPM: 20, TPM: 40000, TPD: 250000}},
		{"sk-demo-pro-7b2e51", quota.Limits{RPM: 5, TPM: 40000, TPD: 0}},
	} {
		k, _ := reg.Authenticate(context.Background(), tt.secret)
		if k == nil || k.Limits != tt.want {
			t.Errorf("%s: %+v, want limits %+v", tt.secret, k, tt.want)
		}
	}
}

// TestCacheWritePriceDefaults: a price without cache-write prices gets
// Anthropic's multipliers of its input price; set ones are kept.
func TestCacheWritePriceDefaults(t *testing.T) {
	ps, err := pricesFrom(ModelConfig{Price: &PriceConfig{Input: 3, Output: 15}}, "models.m")
	if err != nil || len(ps) != 1 {
		t.Fatal(ps, err)
	}
	if p := ps[0]; p.CachedInput != 3_000_000 || p.CacheWrite != 3_750_000 || p.CacheWrite1h != 6_000_000 {
		t.Errorf("defaults %+v", p)
	}
	w, w1 := 1.5, 2.5
	ps, _ = pricesFrom(ModelConfig{Price: &PriceConfig{Input: 1, CacheWrite: &w, CacheWrite1h: &w1}}, "models.m")
	if p := ps[0]; p.CacheWrite != 1_500_000 || p.CacheWrite1h != 2_500_000 {
		t.Errorf("set %+v", p)
	}
	bad := -1.0
	if _, err := pricesFrom(ModelConfig{Price: &PriceConfig{Input: 1, CacheWrite1h: &bad}}, "models.m"); err == nil || !strings.Contains(err.Error(), "models.m.price.cache_write_1h") {
		t.Errorf("a negative cache_write_1h: %v", err)
	}
}

// TestAdminTokens: OBOL_ADMIN_TOKEN, OBOL_ADMIN_TOKENS and admin_tokens
// open the admin API together, each by its name; a weak, unnamed or
// twice-named token refuses to start.
func TestAdminTokens(t *testing.T) {
	const a, b, c = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210", "a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6"
	sum := sha256.Sum256([]byte(c))
	cfg := &Config{AdminTokens: []AdminTokenConfig{{Name: "from-file", SHA256: hex.EncodeToString(sum[:])}}}
	toks, err := adminTokensOf(cfg, envMap(map[string]string{"OBOL_ADMIN_TOKEN": a, "OBOL_ADMIN_TOKENS": "ops-new=" + b}))
	if err != nil {
		t.Fatal(err)
	}
	for secret, want := range map[string]string{a: "default", b: "ops-new", c: "from-file"} {
		if name, ok := toks.Match(secret); !ok || name != want {
			t.Errorf("%s: %q %v, want %q", secret[:4], name, ok, want)
		}
	}
	if _, ok := toks.Match("sk-demo-pro-7b2e51"); ok {
		t.Error("a wrong token opened the admin API")
	}
	for env, want := range map[string]string{
		"weak=aaaaaaaaaaaaaaaaaaaa": "OBOL_ADMIN_TOKENS (weak)",
		"x=" + b + ",x=" + a:        `the name "x" is used twice`,
		b:                           "entry 1: want name=token",
	} {
		if _, err := adminTokensOf(&Config{}, envMap(map[string]string{"OBOL_ADMIN_TOKENS": env})); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", env, err, want)
		}
	}
	bad := &Config{AdminTokens: []AdminTokenConfig{{Name: "n", SHA256: "abc"}}}
	if err := bad.checkAdminTokens(); err == nil || !strings.Contains(err.Error(), "admin_tokens[0].sha256") {
		t.Errorf("a short digest: %v", err)
	}
}
