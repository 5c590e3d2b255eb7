package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

const adminToken = "test-admin-token-0123456789abcdef"

// withAdmin keeps run-time keys in a schema of the test's own in the
// shared PostgreSQL and opens the admin API with adminToken.
func withAdmin(t *testing.T) envOption {
	pool, _ := pgtest.Shared(t)
	return func(c *envConfig) {
		c.keyStore, c.keyPoll, c.AdminToken = keys.NewPostgres(pool), 20*time.Millisecond, adminToken
	}
}

// do sends a request with a bearer token and a JSON body (none if "").
func (e *env) do(t *testing.T, method, path, token, body string) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, e.gw.URL+path, rd)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

type keyJSON struct {
	ID         string            `json:"id"`
	Object     string            `json:"object"`
	Name       string            `json:"name"`
	Tier       string            `json:"tier"`
	Models     []string          `json:"models"`
	Limits     map[string]int64  `json:"limits"`
	Scopes     []string          `json:"scopes"`
	Metadata   map[string]string `json:"metadata"`
	Prefix     string            `json:"prefix"`
	Status     string            `json:"status"`
	Secret     string            `json:"secret"`
	ExpiresAt  *time.Time        `json:"expires_at"`
	LastUsedAt *time.Time        `json:"last_used_at"`
}

func (e *env) createKey(t *testing.T, body string) keyJSON {
	t.Helper()
	resp, b := e.do(t, "POST", "/v1/admin/keys", adminToken, body)
	if resp.StatusCode != 201 {
		t.Fatalf("create %s: %d %s", body, resp.StatusCode, b)
	}
	var k keyJSON
	if err := json.Unmarshal(b, &k); err != nil {
		t.Fatal(err)
	}
	return k
}

func TestAdminKeyLifecycle(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3}, withAdmin(t))
	chat := `{"model":"hermes","messages":[{"role":"user","content":"hi"}],"max_tokens":5}`

	// Only the admin token opens the admin API.
	for _, tt := range []struct{ token, msg string }{
		{"", "missing admin token"},
		{"wrong-token-wrong-token", "invalid admin token"},
		{keyAll, "admin routes take the admin token, not an API key"},
	} {
		resp, b := e.do(t, "GET", "/v1/admin/keys", tt.token, "")
		if resp.StatusCode != 401 || !strings.Contains(string(b), tt.msg) {
			t.Errorf("token %q: %d %s", tt.token, resp.StatusCode, b)
		}
	}

	exp := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	k := e.createKey(t, `{"name":"acme","tier":"pro","models":["hermes"],"limits":{"tpm":1000},"scopes":["chat","usage"],"expires_at":"`+exp+`","metadata":{"customer":"acme-42"}}`)
	if !regexp.MustCompile(`^sk-obol-[0-9A-Z]{10}_[0-9A-Z]{58}$`).MatchString(k.Secret) || k.ID != "key_"+k.Secret[8:18] ||
		k.Status != "active" || k.Limits["tpm"] != 1000 || k.Metadata["customer"] != "acme-42" || k.ExpiresAt == nil || k.Object != "api_key" {
		t.Fatalf("created %+v", k)
	}
	if !strings.HasPrefix(k.Secret, strings.TrimSuffix(k.Prefix, "…")) {
		t.Errorf("prefix %q of %q", k.Prefix, k.Secret)
	}

	// The secret works, within its scopes and models.
	if resp, b := e.do(t, "POST", "/v1/chat", k.Secret, chat); resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit-Tokens") != "1000" {
		t.Errorf("chat with the new key: %d %s %v", resp.StatusCode, b, resp.Header)
	}
	if resp, b := e.do(t, "GET", "/v1/models", k.Secret, ""); resp.StatusCode != 403 || !strings.Contains(string(b), `lacks the scope \"models\"`) {
		t.Errorf("models without the scope: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "POST", "/v1/chat", k.Secret, `{"model":"charon","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 403 {
		t.Errorf("a model the key may not use: %d %s", resp.StatusCode, b)
	}

	// Listed and read back without the secret or its digest.
	resp, b := e.do(t, "GET", "/v1/admin/keys", adminToken, "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), k.ID) || strings.Contains(string(b), k.Secret) ||
		strings.Contains(string(b), "sha256") || strings.Contains(string(b), keys.Digest(k.Secret)) {
		t.Errorf("list: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do(t, "GET", "/api/v1/admin/keys/"+k.ID, adminToken, "")
	var got keyJSON
	json.Unmarshal(b, &got)
	if resp.StatusCode != 200 || got.ID != k.ID || got.Secret != "" || got.Tier != "pro" {
		t.Errorf("get: %d %s", resp.StatusCode, b)
	}

	// A tier change applies to the next request; a limit back to null
	// returns to the tier's.
	resp, b = e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, `{"tier":"team","limits":{"tpm":null},"scopes":["chat","models","usage"]}`)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"tier":"team"`) || strings.Contains(string(b), `"tpm"`) {
		t.Fatalf("patch: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do(t, "POST", "/v1/chat", k.Secret, chat); resp.Header.Get("X-Ratelimit-Limit-Requests") != "2000" || resp.Header.Get("X-Ratelimit-Limit-Tokens") != "2000000" {
		t.Errorf("after the upgrade: %v", resp.Header)
	}
	if resp, _ := e.do(t, "GET", "/v1/models", k.Secret, ""); resp.StatusCode != 200 {
		t.Errorf("models after the scope was granted: %d", resp.StatusCode)
	}

	// Revoked: refused at once; revoking again is harmless; a change is a conflict.
	resp, b = e.do(t, "DELETE", "/v1/admin/keys/"+k.ID, adminToken, "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"status":"revoked"`) {
		t.Errorf("revoke: %d %s", resp.StatusCode, b)
	}
	if resp, b := e.do(t, "POST", "/v1/chat", k.Secret, chat); resp.StatusCode != 401 {
		t.Errorf("the revoked key: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do(t, "DELETE", "/v1/admin/keys/"+k.ID, adminToken, ""); resp.StatusCode != 200 {
		t.Errorf("revoke twice: %d", resp.StatusCode)
	}
	if resp, b := e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, `{"tier":"free"}`); resp.StatusCode != 409 {
		t.Errorf("patch a revoked key: %d %s", resp.StatusCode, b)
	}
	if resp, _ := e.do(t, "GET", "/v1/admin/keys/key_NOSUCHKEY0", adminToken, ""); resp.StatusCode != 404 {
		t.Errorf("unknown id: %d", resp.StatusCode)
	}

	// Neither the secret nor the admin token reached the log.
	logs := e.log.String()
	if strings.Contains(logs, k.Secret) || strings.Contains(logs, k.Secret[18:40]) || strings.Contains(logs, adminToken) {
		t.Error("a secret is in the log")
	}
	if !strings.Contains(logs, `"msg":"key revoked","key_id":"`+k.ID+`"`) {
		t.Error("the revocation is not in the log")
	}
}

func TestAdminBadInput(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAdmin(t))
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	tests := []struct{ body, param string }{
		{`{"name":"x"}`, "tier"},
		{`{"tier":"gold"}`, "tier"},
		{`{"tier":"pro","models":["zeus"]}`, "models"},
		{`{"tier":"pro","scopes":["admin"]}`, "scopes"},
		{`{"tier":"pro","limits":{"rpm":-1}}`, "limits.rpm"},
		{`{"tier":"pro","limits":{"rpd":5}}`, "limits.rpd"},
		{`{"tier":"pro","limits":{"tpm":"lots"}}`, "limits.tpm"},
		{`{"tier":"pro","expires_at":"` + past + `"}`, "expires_at"},
		{`{"tier":"pro","expires_at":"tomorrow"}`, "expires_at"},
		{`{"tier":"pro","owner":"me"}`, "owner"},
		{`{"tier":5}`, "tier"},
		{`{"tier":"pro","metadata":{"a":1}}`, "metadata"},
		{`not json`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		resp, b := e.do(t, "POST", "/v1/admin/keys", adminToken, tt.body)
		var ae apiError
		json.Unmarshal(b, &ae)
		param := ""
		if ae.Error.Param != nil {
			param = *ae.Error.Param
		}
		if resp.StatusCode != 400 || ae.Error.Code != "bad_request" || param != tt.param {
			t.Errorf("%s: %d %s, want 400 on %q", tt.body, resp.StatusCode, b, tt.param)
		}
	}
	if resp, b := e.do(t, "GET", "/v1/admin/keys", adminToken, ""); resp.StatusCode != 200 || strings.Contains(string(b), `"source":"api"`) {
		t.Errorf("refused keys were made: %d %s", resp.StatusCode, b)
	}
	k := e.createKey(t, `{"tier":"free"}`)
	for _, body := range []string{`{"tier":""}`, `{"models":["zeus"]}`, `{"expires_at":"` + past + `"}`} {
		if resp, b := e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, body); resp.StatusCode != 400 {
			t.Errorf("patch %s: %d %s", body, resp.StatusCode, b)
		}
	}
}

// TestScopesOnEveryRoute: each scope opens its routes and only those.
func TestScopesOnEveryRoute(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2}, withAdmin(t))
	chat := `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`
	stream := `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	routes := []struct{ name, method, path, body string }{
		{"chat", "POST", "/v1/chat", chat},
		{"stream", "POST", "/v1/chat/stream", chat},
		{"completions", "POST", "/v1/chat/completions", chat},
		{"completions-stream", "POST", "/v1/chat/completions", stream},
		{"models", "GET", "/v1/models", ""},
		{"model", "GET", "/v1/models/hermes", ""},
		{"usage", "GET", "/v1/usage", ""},
	}
	for _, tt := range []struct {
		scopes string
		open   string // the routes that answer 200; the others 403
	}{
		{`["chat"]`, "chat stream completions completions-stream"},
		{`["chat:stream"]`, "stream completions-stream"},
		{`["models"]`, "models model"},
		{`["usage"]`, "usage"},
		{`[]`, ""},
	} {
		k := e.createKey(t, `{"tier":"team","scopes":`+tt.scopes+`}`)
		for _, r := range routes {
			resp, b := e.do(t, r.method, r.path, k.Secret, r.body)
			want := 403
			if strings.Contains(" "+tt.open+" ", " "+r.name+" ") {
				want = 200
			}
			if resp.StatusCode != want {
				t.Errorf("scopes %s, %s: %d, want %d (%s)", tt.scopes, r.name, resp.StatusCode, want, b)
			}
			if want == 403 && !strings.Contains(string(b), "lacks the scope") {
				t.Errorf("scopes %s, %s: %s", tt.scopes, r.name, b)
			}
		}
	}
}

func TestAdminUsage(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4}, withAdmin(t), withLedger(postgresLedger(t)))
	a := e.createKey(t, `{"tier":"pro","name":"a"}`)
	b := e.createKey(t, `{"tier":"pro","name":"b"}`)
	for _, s := range []string{a.Secret, a.Secret, b.Secret} {
		if resp, body := e.do(t, "POST", "/v1/chat", s, `{"model":"hermes","messages":[{"role":"user","content":"one two"}]}`); resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	type out struct {
		Period      string `json:"period"`
		TotalTokens int64  `json:"total_tokens"`
		Keys        map[string]struct {
			TotalTokens int64 `json:"total_tokens"`
		} `json:"keys"`
	}
	var u out
	poll.Until(t, "three records", func() bool {
		_, body := e.do(t, "GET", "/v1/admin/usage", adminToken, "")
		json.Unmarshal(body, &u)
		return u.Keys[a.ID].TotalTokens == 2*(5+4) && u.Keys[b.ID].TotalTokens == 5+4
	})
	if u.TotalTokens != 27 || u.Period != time.Now().UTC().Format("2006-01") {
		t.Errorf("usage %+v", u)
	}
	_, body := e.do(t, "GET", "/v1/admin/usage?key="+b.ID+"&period="+u.Period, adminToken, "")
	var one out
	json.Unmarshal(body, &one)
	if len(one.Keys) != 1 || one.TotalTokens != 9 {
		t.Errorf("one key: %s", body)
	}
	if resp, _ := e.do(t, "GET", "/v1/admin/usage?period=11-2026", adminToken, ""); resp.StatusCode != 400 {
		t.Errorf("bad period: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/v1/admin/usage", a.Secret, ""); resp.StatusCode != 401 {
		t.Errorf("an API key read every key's usage: %d", resp.StatusCode)
	}
}

// TestFailedAuthSlowedDown: past a burst of bad keys, an address's bad
// keys are answered 429 with a Retry-After; its good ones still pass.
func TestFailedAuthSlowedDown(t *testing.T) {
	e := newEnv(t, sim.Config{})
	var last *http.Response
	var lastBody []byte
	for i := 0; i < 25; i++ {
		last, lastBody = e.do(t, "GET", "/v1/models", "sk-guess-"+strings.Repeat("x", i), "")
	}
	if last.StatusCode != 429 || last.Header.Get("Retry-After") == "" {
		t.Fatalf("after 25 bad keys: %d %v", last.StatusCode, last.Header)
	}
	if !strings.Contains(string(lastBody), "too many failed authentications") {
		t.Errorf("the 429 says %s", lastBody)
	}
	// A valid credential is never refused by the guard (issue 15: one
	// client behind a shared address must not lock out everyone).
	if resp, b := e.do(t, "GET", "/v1/models", keyAll, ""); resp.StatusCode != 200 {
		t.Errorf("a good key from an address sending bad ones: %d %s", resp.StatusCode, b)
	}
}

func TestAdminOffAndSeparate(t *testing.T) {
	e := newEnv(t, sim.Config{})
	if resp, b := e.do(t, "GET", "/v1/admin/keys", adminToken, ""); resp.StatusCode != 403 || !strings.Contains(string(b), "OBOL_ADMIN_TOKEN") {
		t.Errorf("admin without a token configured: %d %s", resp.StatusCode, b)
	}
	e = newEnv(t, sim.Config{}, withAdmin(t), func(c *envConfig) { c.SeparateAdmin, c.AdminAddr = true, "127.0.0.1:9090" })
	if resp, _ := e.do(t, "GET", "/v1/admin/keys", adminToken, ""); resp.StatusCode != 404 {
		t.Errorf("admin API on the public listener: %d", resp.StatusCode)
	}
	// The public dashboard refuses the admin token, saying where its view is.
	if resp, b := e.do(t, "GET", "/dashboard/session", adminToken, ""); resp.StatusCode != 403 || !strings.Contains(string(b), "127.0.0.1:9090") {
		t.Errorf("the admin token on the public dashboard: %d %s", resp.StatusCode, b)
	}
	admin := httptest.NewServer(e.srv.AdminHandler())
	defer admin.Close()
	req, _ := http.NewRequest("GET", admin.URL+"/v1/admin/keys", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("admin listener: %v %v", resp, err)
	}
	if resp, err := http.Get(admin.URL + "/v1/models"); err != nil || resp.StatusCode != 404 {
		t.Errorf("the public API on the admin listener: %v %v", resp, err)
	}
	req, _ = http.NewRequest("GET", admin.URL+"/dashboard/session", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("the admin token on the admin listener's dashboard: %v %v", resp, err)
	}
}

// TestAdminKeyProject: a run-time key joins a configured project at
// creation, and leaves it with null; an unknown project is refused.
func TestAdminKeyProject(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2}, withAdmin(t), withProject("acme", quota.Limits{RPM: 1}))
	k := e.createKey(t, `{"tier":"pro","project":"acme"}`)
	resp, b := e.do(t, "GET", "/v1/admin/keys/"+k.ID, adminToken, "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"project":"acme"`) {
		t.Fatalf("the key: %d %s", resp.StatusCode, b)
	}
	// The project's one request a minute holds for the new key.
	if resp := e.post(t, "/v1/chat", k.Secret, hi+`}`); resp.StatusCode != 200 {
		t.Errorf("first: %d", resp.StatusCode)
	}
	if resp := e.post(t, "/v1/chat", k.Secret, hi+`}`); resp.StatusCode != 429 {
		t.Errorf("second, over the project's RPM: %d", resp.StatusCode)
	}
	if resp, b := e.do(t, "POST", "/v1/admin/keys", adminToken, `{"tier":"pro","project":"beta"}`); resp.StatusCode != 400 ||
		!strings.Contains(string(b), `"param":"project"`) {
		t.Errorf("an unknown project: %d %s", resp.StatusCode, b)
	}
	resp, b = e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, `{"project":null}`)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"project":null`) {
		t.Errorf("leaving the project: %d %s", resp.StatusCode, b)
	}
}

// withEmbeddedAdmin is withAdmin with run-time keys in an embedded store.
func withEmbeddedAdmin(t *testing.T) envOption {
	st, err := keys.OpenEmbedded(bolttest.Open(t))
	if err != nil {
		t.Fatal(err)
	}
	return func(c *envConfig) {
		c.keyStore, c.keyPoll, c.AdminToken = st, 20*time.Millisecond, adminToken
	}
}

// TestAdminRefusesNUL: a NUL character in a key's or a project's name or
// metadata is a 400 naming the field, on create and on update, in both
// stores, not a store failure; so is a member whose name folds to a field
// without being it.
func TestAdminRefusesNUL(t *testing.T) {
	for name, opt := range map[string]func(*testing.T) envOption{"postgres": withAdmin, "embedded": withEmbeddedAdmin} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, sim.Config{}, opt(t))
			k := e.createKey(t, `{"tier":"free","name":"ok"}`)
			resp, b := e.do(t, "POST", "/v1/admin/projects", adminToken, `{"id":"nul","name":"ok"}`)
			if resp.StatusCode != 201 {
				t.Fatalf("project: %d %s", resp.StatusCode, b)
			}
			for _, tt := range []struct{ method, path, body, param string }{
				{"POST", "/v1/admin/keys", `{"tier":"free","name":"a\u0000b"}`, "name"},
				{"POST", "/v1/admin/keys", `{"tier":"free","metadata":{"team":"x\u0000"}}`, "metadata.team"},
				{"PATCH", "/v1/admin/keys/" + k.ID, `{"name":"\u0000"}`, "name"},
				{"PATCH", "/v1/admin/keys/" + k.ID, `{"metadata":{"a\u0000":"x"}}`, "metadata"},
				{"POST", "/v1/admin/projects", `{"id":"p2","name":"a\u0000"}`, "name"},
				{"PATCH", "/v1/admin/projects/nul", `{"metadata":{"k":"\u0000"}}`, "metadata.k"},
				// Folded names, which encoding/json would take for the fields.
				{"POST", "/v1/admin/keys", `{"tieR":"team"}`, "tieR"},
				{"PATCH", "/v1/admin/keys/" + k.ID, `{"budget":{"monthlY":1}}`, "budget.monthlY"},
				{"POST", "/v1/admin/projects", `{"id":"p3","Budget":{"monthly":1}}`, "Budget"},
			} {
				resp, b := e.do(t, tt.method, tt.path, adminToken, tt.body)
				var ae apiError
				json.Unmarshal(b, &ae)
				if resp.StatusCode != 400 || ae.Error.Param == nil || *ae.Error.Param != tt.param {
					t.Errorf("%s %s %s: %d %s, want a 400 naming %s", tt.method, tt.path, tt.body, resp.StatusCode, b, tt.param)
				}
			}
		})
	}
}

// TestAdminTokensRotate: two admin tokens open the admin API at once, so
// a new one is rolled out before the old one goes; the access log and the
// audit record name the token each request came with.
func TestAdminTokensRotate(t *testing.T) {
	const next = "next-admin-token-9f8e7d6c5b4a3921"
	e := newEnv(t, sim.Config{}, withAdmin(t), func(c *envConfig) {
		c.MoreAdminTokens = []keys.AdminTokenDigest{keys.AdminTokenOf("rotated-2026-12", next)}
	})
	for _, tok := range []string{adminToken, next} {
		if resp, body := e.do(t, "POST", "/v1/admin/keys", tok, `{"tier":"free"}`); resp.StatusCode != 201 {
			t.Errorf("create with a token: %d %s", resp.StatusCode, body)
		}
	}
	var names []string
	poll.Until(t, "the access log lines of both", func() bool {
		names = names[:0]
		for _, l := range accessLogLines(t, e) {
			if l["path"] == "/v1/admin/keys" {
				names = append(names, fmt.Sprint(l["admin_token"]))
			}
		}
		return len(names) == 2
	})
	if strings.Join(names, ",") != "default,rotated-2026-12" {
		t.Errorf("access log admin_token: %v", names)
	}
	if !strings.Contains(e.log.String(), `"msg":"admin audit","admin_token":"rotated-2026-12","method":"POST","path":"/v1/admin/keys","outcome":"ok"`) {
		t.Errorf("no audit record naming the token:\n%s", e.log.String())
	}
}

// accessLogLines are the test gateway's access log lines, decoded.
func accessLogLines(t *testing.T, e *env) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(e.log.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil && l["msg"] == "request" {
			out = append(out, l)
		}
	}
	return out
}
