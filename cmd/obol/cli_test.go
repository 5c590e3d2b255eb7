package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/loadtest/sim"
)

const cliToken = "cli-test-admin-token-9f8e7d6c5b4a"

// cli runs an obol command in process and returns what it printed.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, strings.NewReader(""), &out, &errOut,
		envMap(map[string]string{"OBOL_ADMIN_TOKEN": cliToken}))
	return out.String() + errOut.String(), err
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := cli(t, args...)
	if err != nil {
		t.Fatalf("obol %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func createdKey(t *testing.T, base string, args ...string) cliKey {
	t.Helper()
	var k cliKey
	out := mustCLI(t, append([]string{"keys", "create", "--server", base, "--json"}, args...)...)
	if err := json.Unmarshal([]byte(out), &k); err != nil || k.Secret == "" {
		t.Fatalf("create: %v\n%s", err, out)
	}
	return k
}

func send(t *testing.T, base, secret, path, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestOperatorsFirstDay: three replicas on one Redis and one PostgreSQL. With the CLI, an
// operator creates keys for three customers in three tiers and a
// usage-only key for a dashboard, upgrades one, revokes one while its
// stream runs on another replica, and bills the month.
func TestOperatorsFirstDay(t *testing.T) {
	s := sim.New(sim.Config{ReplyTokens: 5})
	up := httptest.NewServer(s)
	defer up.Close()
	_, prefix := redistest.Shared(t)
	_, pgURL := pgtest.Shared(t)
	var bases []string
	var logs []*syncbuf.Buffer
	for i := 0; i < 3; i++ {
		_, base, l := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(),
			"TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL, "OBOL_ADMIN_TOKEN="+cliToken)
		bases = append(bases, base)
		logs = append(logs, l)
	}
	a, b, c := bases[0], bases[1], bases[2]
	chat := `{"model":"hermes","messages":[{"role":"user","content":"hello there"}],"max_tokens":5}`

	alice := createdKey(t, a, "--tier", "free", "--name", "alice", "--meta", "customer=alice-co")
	bob := createdKey(t, a, "--tier", "pro", "--name", "bob", "--tpm", "100000", "--concurrency", "4", "--budget", "12.5", "--alert-at", "0.9")
	if bob.Limits["tpm"] != 100000 || bob.Limits["concurrency"] != 4 || bob.Budget == nil || bob.Budget.Monthly != "12.5" || len(bob.Budget.AlertAt) != 1 {
		t.Errorf("bob's own limits: %v, budget %+v", bob.Limits, bob.Budget)
	}
	if out := mustCLI(t, "keys", "get", bob.ID, "--server", b); !strings.Contains(out, "$12.5 a month, alerts at 90%") {
		t.Errorf("bob's budget in the table:\n%s", out)
	}
	carol := createdKey(t, a, "--tier", "team", "--name", "carol", "--expires-in", "720h")
	dash := createdKey(t, a, "--tier", "free", "--name", "billing dashboard", "--scopes", "usage")

	// Each key works on every replica, in its tier.
	for i, k := range []cliKey{alice, bob, carol} {
		resp := send(t, bases[i], k.Secret, "/v1/chat", chat)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		want := map[string]string{"free": "20", "pro": "500", "team": "2000"}[k.Tier]
		if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Limit-Requests") != want {
			t.Errorf("%s on replica %d: %d, RPM %q", k.Name, i, resp.StatusCode, resp.Header.Get("X-Ratelimit-Limit-Requests"))
		}
	}
	// The dashboard's key reads usage and cannot spend tokens.
	if resp := send(t, c, dash.Secret, "/v1/chat", chat); resp.StatusCode != 403 {
		t.Errorf("the usage-only key chatted: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest("GET", c+"/v1/usage", nil)
	req.Header.Set("Authorization", "Bearer "+dash.Secret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("the usage-only key read usage: %v %v", resp, err)
	}

	// The table shows them all.
	table := mustCLI(t, "keys", "list", "--server", b)
	for _, k := range []cliKey{alice, bob, carol, dash} {
		if !strings.Contains(table, k.ID) {
			t.Errorf("%s not in the list:\n%s", k.ID, table)
		}
	}
	if !strings.HasPrefix(table, "ID") || strings.Contains(table, alice.Secret) {
		t.Errorf("list:\n%s", table)
	}

	// Upgrade alice to pro: the next request on another replica has it.
	if out := mustCLI(t, "keys", "update", alice.ID, "--server", a, "--tier", "pro"); !strings.Contains(out, "pro") {
		t.Errorf("update:\n%s", out)
	}
	poll.Until(t, "replica c to see alice's upgrade", func() bool {
		resp := send(t, c, alice.Secret, "/v1/chat", chat)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.Header.Get("X-Ratelimit-Limit-Requests") == "500"
	})

	// Revoke bob on replica a while his stream runs on replica b.
	s.SetConfig(sim.Config{ReplyTokens: 100, TokensPerSecond: 100})
	resp := send(t, b, bob.Secret, "/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"a long one"}]}`)
	var streamed sync.WaitGroup
	var tail string
	streamed.Add(1)
	go func() {
		defer streamed.Done()
		rest, _ := io.ReadAll(resp.Body)
		tail = string(rest)
		resp.Body.Close()
	}()
	if out := mustCLI(t, "keys", "revoke", bob.ID, "--server", a); !strings.Contains(out, "revoked") {
		t.Errorf("revoke:\n%s", out)
	}
	revoked := time.Now()
	for i, base := range bases {
		poll.Until(t, "the revocation on replica "+base, func() bool {
			r := send(t, base, bob.Secret, "/v1/chat", chat)
			r.Body.Close()
			return r.StatusCode == 401
		})
		t.Logf("replica %d refuses the revoked key %s after the revocation", i, time.Since(revoked).Round(time.Millisecond))
	}
	streamed.Wait()
	// A stream admitted before the revocation runs to its end.
	if !strings.HasSuffix(tail, "data: [DONE]\n\n") || strings.Contains(tail, "error") {
		t.Errorf("bob's stream in flight: …%s", tail[max(0, len(tail)-200):])
	}
	s.SetConfig(sim.Config{ReplyTokens: 5})

	// Bill the month.
	var bill struct {
		TotalTokens int64 `json:"total_tokens"`
		Keys        map[string]struct {
			TotalTokens int64 `json:"total_tokens"`
		} `json:"keys"`
	}
	poll.Until(t, "every key in the month's usage", func() bool {
		out, err := cli(t, "usage", "--server", b, "--json")
		return err == nil && json.Unmarshal([]byte(out), &bill) == nil && len(bill.Keys) == 3 && bill.Keys[bob.ID].TotalTokens > 100
	})
	st := s.Stats()
	if bill.TotalTokens != st.PromptTokens+st.CompletionTokens {
		t.Errorf("billed %d tokens; the backend counted %d", bill.TotalTokens, st.PromptTokens+st.CompletionTokens)
	}
	usageTable := mustCLI(t, "usage", "--server", c)
	for _, k := range []cliKey{alice, bob, carol} {
		if !strings.Contains(usageTable, k.ID) {
			t.Errorf("%s not in the usage table:\n%s", k.ID, usageTable)
		}
	}
	if one := mustCLI(t, "usage", "--server", a, "--key", carol.ID, "--json"); strings.Contains(one, alice.ID) {
		t.Errorf("--key: %s", one)
	}

	// No secret and no admin token in any replica's log.
	for i, l := range logs {
		for _, sec := range []string{alice.Secret, bob.Secret, carol.Secret, dash.Secret, cliToken} {
			if strings.Contains(l.String(), sec) || strings.Contains(l.String(), sec[len(sec)-20:]) {
				t.Errorf("replica %d logged a secret", i)
			}
		}
	}
}

func TestCLIErrors(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{}))
	defer up.Close()
	_, base, _ := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(),
		"OBOL_ADMIN_TOKEN="+cliToken)
	tests := []struct {
		args  []string
		usage bool   // a usage error (exit 2), not an API one
		want  string // in the message
	}{
		{[]string{"keys"}, true, "subcommand"},
		{[]string{"keys", "create", "--server", base}, true, "--tier is required"},
		{[]string{"keys", "create", "--server", base, "--tier", "gold"}, false, "400 bad_request: unknown tier"},
		{[]string{"keys", "create", "--server", base, "--tier", "free", "--rpm", "-3"}, true, "--rpm"},
		{[]string{"keys", "create", "--server", base, "--tier", "free", "--expires", "soon"}, true, "RFC 3339"},
		{[]string{"keys", "create", "--server", base, "--tier", "free", "--budget", "lots"}, true, "--budget"},
		{[]string{"keys", "create", "--server", base, "--tier", "free", "--alert-at", "0.5"}, true, "go with --budget"},
		{[]string{"keys", "create", "--server", base, "--tier", "free", "--budget", "1", "--alert-at", "2,1"}, false, "(budget.alert_at)"},
		{[]string{"keys", "get", "--server", base}, true, "id comes first"},
		{[]string{"keys", "get", "key_NOSUCHKEY0", "--server", base}, false, "404 not_found"},
		{[]string{"keys", "update", "key_NOSUCHKEY0", "--server", base}, true, "nothing to change"},
		{[]string{"keys", "fly"}, true, "unknown subcommand"},
		{[]string{"projects"}, true, "a subcommand is required"},
		{[]string{"projects", "get", "--server", base}, true, "the project's id comes first"},
		{[]string{"projects", "update", "nope", "--server", base}, true, "nothing to change"},
		{[]string{"projects", "get", "nope", "--server", base}, false, "404 not_found"},
		{[]string{"projects", "create", "Bad id", "--server", base}, false, "400 bad_request"},
		{[]string{"usage", "--server", base, "--period", "2026-13"}, false, "400 bad_request"},
		{[]string{"keys", "list", "--server", "not a url"}, true, "--server"},
	}
	for _, tt := range tests {
		out, err := cli(t, tt.args...)
		var ue *usageError
		if err == nil || (errAs(err, &ue) != tt.usage) || !strings.Contains(err.Error()+out, tt.want) {
			t.Errorf("obol %s: %v (usage error %v)\n%s", strings.Join(tt.args, " "), err, ue != nil, out)
		}
	}
	// Without the token, the CLI says what is missing.
	err := run(context.Background(), []string{"keys", "list", "--server", base}, strings.NewReader(""), io.Discard, io.Discard, envMap(nil))
	if err == nil || !strings.Contains(err.Error(), "OBOL_ADMIN_TOKEN") {
		t.Errorf("no token: %v", err)
	}
}

func errAs(err error, target **usageError) bool { return errors.As(err, target) }

// TestAdminListener: with admin_listen set, the admin API answers there
// and not on the public listener.
func TestAdminListener(t *testing.T) {
	up := httptest.NewServer(sim.New(sim.Config{}))
	defer up.Close()
	_, base, logs := startObolWith(t, "testdata/ledger.yaml", "TEST_UPSTREAM="+up.URL+"/v1", "TEST_DATA_DIR="+t.TempDir(),
		"OBOL_ADMIN_TOKEN="+cliToken, "TEST_ADMIN_LISTEN=127.0.0.1:0", "TEST_PPROF=true")
	waitLog(t, logs, "obol admin API listening")
	m := regexp.MustCompile(`"msg":"obol admin API listening","addr":"([^"]+)"`).FindStringSubmatch(logs.String())
	if m == nil {
		t.Fatalf("no admin address in the log:\n%s", logs)
	}
	if _, err := cli(t, "keys", "list", "--server", base); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("the admin API on the public listener: %v", err)
	}
	if out, err := cli(t, "keys", "list", "--server", "http://"+m[1]); err != nil || !strings.HasPrefix(out, "ID") {
		t.Errorf("the admin listener: %v\n%s", err, out)
	}
	// /metrics goes with the admin API.
	if resp, err := http.Get(base + "/metrics"); err != nil || resp.StatusCode != 404 {
		t.Errorf("/metrics on the public listener: %v %v", resp, err)
	}
	resp, err := http.Get("http://" + m[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// Every package's instruments reach it: the gateway's, the ledger's, Go's.
	for _, series := range []string{"http_server_request_duration_seconds_count", "obol_usage_queue_length", "go_goroutines"} {
		if !strings.Contains(string(b), series) {
			t.Errorf("/metrics lacks %s", series)
		}
	}
	// So do Go's profiles, with pprof: true; never on the public port.
	if resp, err := http.Get(base + "/debug/pprof/goroutine?debug=1"); err != nil || resp.StatusCode != 404 {
		t.Errorf("profiles on the public listener: %v %v", resp, err)
	}
	resp, err = http.Get("http://" + m[1] + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "goroutine profile:") {
		t.Errorf("goroutine profile on the admin listener: %d\n%.200s", resp.StatusCode, b)
	}
}
