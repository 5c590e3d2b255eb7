package gateway_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/json"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/admin"
	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// Test keys: secrets and what they may do.
const (
	keyAll    = "sk-test-all-0123456789"
	keyHermes = "sk-test-hermes-only-0123456789"
)

type env struct {
	sim *sim.Server
	gw  *httptest.Server
	srv *gateway.Server
	log *syncbuf.Buffer
	// serverLog is what Go's HTTP server logged: a handler's panic, a
	// broken connection.
	serverLog *syncbuf.Buffer
	ledger    *usage.Ledger // nil when an option put another Ledger in
	quota     gateway.Quota
}

// envConfig is what an envOption may change before the gateway starts.
type envConfig struct {
	gateway.Options
	models []models.Model
	keys   map[string]keys.Static // by secret; SHA256 is filled in
	// keyStore, if set, holds run-time keys, administered through the
	// admin API; keyPoll is how often its change log is read.
	keyStore keys.Store
	keyPoll  time.Duration
	projects keys.Projects
	// h2c: the gateway also speaks HTTP/2 without TLS, as with h2: true.
	h2c bool
	// The admin API mounted on the gateway, as cmd/obol mounts it.
	AdminToken      string
	MoreAdminTokens []keys.AdminTokenDigest
	Admin           admin.KeyAdmin
	UsageAdmin      admin.UsageAdmin
	Alerts          admin.AlertAdmin
	Backends        admin.BackendAdmin
	AdminAddr       string
}

type envOption func(*envConfig)

// withLimits gives the key of secret its own limits.
func withLimits(secret string, lim quota.Limits) envOption {
	return func(c *envConfig) {
		k := c.keys[secret]
		k.Limits = keys.Limits{RPM: &lim.RPM, TPM: &lim.TPM, TPD: &lim.TPD, Concurrency: &lim.Concurrency}
		c.keys[secret] = k
	}
}

// withProject puts the keys of secrets in project id, with its limits.
func withProject(id string, lim quota.Limits, secrets ...string) envOption {
	return func(c *envConfig) {
		if c.projects == nil {
			c.projects = keys.Projects{}
		}
		c.projects[id] = &keys.Project{ID: id, Config: true,
			Limits: keys.Limits{RPM: &lim.RPM, TPM: &lim.TPM, TPD: &lim.TPD, Concurrency: &lim.Concurrency}}
		if lim.Budget > 0 {
			c.projects[id].Budget = &keys.Budget{Monthly: money.Money(lim.Budget)}
		}
		for _, secret := range secrets {
			k := c.keys[secret]
			k.Project = id
			c.keys[secret] = k
		}
	}
}

// redisLimiter decides quotas in the shared test Redis, under a prefix
// of the test's own.
func redisLimiter(t testing.TB) *quota.Limiter {
	rdb, prefix := redistest.Shared(t)
	l := quota.NewLimiter(quota.NewRedis(rdb, prefix), quota.Options{Mode: quota.FailClosed})
	t.Cleanup(l.Close)
	return l
}

// embeddedLedger is a ledger in a bbolt file of the test's own.
func embeddedLedger(t testing.TB) *usage.Ledger {
	e, err := usage.OpenEmbedded(bolttest.Open(t))
	if err != nil {
		t.Fatal(err)
	}
	l := usage.NewLedger(e, usage.Options{Linger: 10 * time.Millisecond}) // as cmd/obol runs it
	t.Cleanup(func() { l.Close(context.Background()) })                   // before the file closes
	return l
}

// postgresLedger is a ledger in a schema of the test's own in the shared
// test PostgreSQL.
func postgresLedger(t testing.TB) *usage.Ledger {
	pool, _ := pgtest.Shared(t)
	l := usage.NewLedger(usage.NewPostgres(pool, 35), usage.Options{})
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

// withLedger makes l the gateway's ledger, which also serves the admin
// API's usage.
func withLedger(l *usage.Ledger) envOption {
	return func(c *envConfig) { c.Ledger, c.UsageAdmin, c.Spend = l, l, l }
}

// withLimiter makes l the gateway's quota store, shared by replicas.
func withLimiter(l *quota.Limiter) envOption {
	return func(c *envConfig) {
		c.Quota = l
		c.Dependencies = []gateway.Dependency{{Name: "redis", Ping: l, Degraded: "admitting under local limits"}}
	}
}

// withQuota makes q the gateway's quota store.
func withQuota(q gateway.Quota) envOption {
	return func(c *envConfig) { c.Quota = q }
}

// newEnv starts a simulator and a gateway in front of it, both on real
// loopback sockets, with models hermes (text) and charon (vision).
func newEnv(t testing.TB, cfg sim.Config, opts ...envOption) *env {
	t.Helper()
	s := sim.New(cfg)
	s.Record(true)
	up := httptest.NewServer(s)
	t.Cleanup(up.Close)
	ms := []models.Model{
		{Name: "hermes", ContextWindow: 4096, Description: "fast", Backends: []models.Backend{{Name: "sim", URL: up.URL + "/v1", Model: "backend-hermes-8b"}}},
		{Name: "charon", ContextWindow: 8192, Vision: true, Backends: []models.Backend{{Name: "sim", URL: up.URL + "/v1", Model: "backend-charon-vl"}}},
	}
	logBuf := &syncbuf.Buffer{}
	client := models.NewClient(models.BreakerOptions{})
	c := &envConfig{
		Backends: client,
		Options: gateway.Options{
			Upstream:     client,
			Quota:        quota.NewMemory(),
			Log:          slog.New(slog.NewJSONHandler(logBuf, nil)),
			MaxBodyBytes: 64 << 10,
		},
		models: ms,
		// The test keys are unlimited unless an option says otherwise;
		// run-time keys have their tier's limits.
		keys: map[string]keys.Static{
			keyAll:    {ID: "key_all", Tier: "pro", Limits: unlimited()},
			keyHermes: {ID: "key_hermes", Tier: "free", Models: []string{"hermes"}, Limits: unlimited()},
		},
	}
	for _, opt := range opts {
		opt(c)
	}
	if c.Ledger == nil {
		withLedger(embeddedLedger(t))(c)
	}
	cat, err := models.NewCatalog(c.models)
	if err != nil {
		t.Fatal(err)
	}
	c.Keys = newKeys(t, c, cat)
	c.Catalog = cat
	srv, err := gateway.New(c.Options)
	if err != nil {
		t.Fatal(err)
	}
	projects, _ := c.Projects.(admin.ProjectAdmin)
	adm := admin.New(admin.Options{Tokens: c.adminTokens(), Keys: c.Admin, Projects: projects, Usage: c.UsageAdmin,
		Alerts: c.Alerts, Backends: c.Backends, Catalog: cat, Auth: c.Keys, Failed: srv.FailedAuth, AdminAddr: c.AdminAddr,
		MaxBodyBytes: c.MaxBodyBytes, Log: c.Log})
	srv.Mount(adm.Routes(), adm.Dashboard)
	gw := httptest.NewUnstartedServer(srv)
	gw.Config.BaseContext = srv.BaseContext
	serverLog := &syncbuf.Buffer{}
	gw.Config.ErrorLog = log.New(serverLog, "", 0)
	if c.h2c {
		gw.Config.Protocols = new(http.Protocols)
		gw.Config.Protocols.SetHTTP1(true)
		gw.Config.Protocols.SetUnencryptedHTTP2(true)
	}
	gw.Start()
	t.Cleanup(gw.Close)
	// First (cleanups run last-in first-out): end the backend calls that
	// outlive their clients, as a shutdown does.
	t.Cleanup(srv.Abort)
	l, _ := c.Ledger.(*usage.Ledger)
	return &env{sim: s, gw: gw, srv: srv, log: logBuf, serverLog: serverLog, ledger: l, quota: c.Quota}
}

// newKeys is the registry of the test's keys, and of run-time keys when
// the test keeps them in a store, which the admin API then administers.
func newKeys(t testing.TB, c *envConfig, cat *models.Catalog) *keys.Registry {
	var static []keys.Static
	for secret, k := range c.keys {
		k.SHA256 = sha256.Sum256([]byte(secret))
		static = append(static, k)
	}
	reg, err := keys.NewRegistry(context.Background(), c.keyStore, keys.Options{
		Static: static, Poll: c.keyPoll, Projects: c.projects,
		KnownModel: func(name string) bool { return cat.Get(name) != nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reg.Close)
	if c.keyStore != nil {
		c.Admin, c.Projects = reg, reg
	}
	return reg
}

func unlimited() keys.Limits {
	var zero int64
	return keys.Limits{RPM: &zero, TPM: &zero, TPD: &zero}
}

// post sends a JSON body with the key (none when key is "").
func (e *env) post(t *testing.T, path, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.gw.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type apiError struct {
	Error struct {
		Code    string  `json:"code"`
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
	} `json:"error"`
}

// readError checks a response is the API's JSON error (docs/api.md) and returns it.
func readError(t *testing.T, resp *http.Response) apiError {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e apiError
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" || e.Error.Type == "" {
		t.Fatalf("not a JSON error (%v): %s", err, b)
	}
	return e
}

// event is one SSE data event as a client reads it.
type event struct {
	raw  string
	done bool
	m    map[string]any
}

// readEvents reads an SSE body to its end, keeping data events and
// counting comments.
func readEvents(t *testing.T, body io.Reader) (events []event, comments int) {
	t.Helper()
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, ":"):
			comments++
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			ev := event{raw: data, done: data == "[DONE]"}
			if !ev.done {
				if err := json.Unmarshal([]byte(data), &ev.m); err != nil {
					t.Fatalf("event is not JSON: %q", data)
				}
			}
			events = append(events, ev)
		case line == "":
		default:
			t.Fatalf("unexpected SSE line %q", line)
		}
	}
	return events, comments
}

// adminTokens are the test's admin tokens: AdminToken, named "default",
// and any more of AdminTokens.
func (c *envConfig) adminTokens() *keys.AdminTokens {
	var list []keys.AdminTokenDigest
	if c.AdminToken != "" {
		list = append(list, keys.AdminTokenOf("default", c.AdminToken))
	}
	return keys.NewAdminTokens(append(list, c.MoreAdminTokens...)...)
}
