package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/obol/obol/alerts"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/usage"
)

const hookSecret = "whsec-budget-test-0123456789"

// hookReceiver is the webhook a budget test's gateways alert.
type hookReceiver struct {
	mu     sync.Mutex
	events []map[string]any
	ids    map[string]int
	bad    int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if alerts.Verify(hookSecret, r.Header.Get("X-Obol-Signature"), body, time.Now(), time.Minute) != nil {
		h.bad++
	}
	var ev map[string]any
	json.Unmarshal(body, &ev)
	h.events = append(h.events, ev)
	h.ids[r.Header.Get("X-Obol-Event-Id")]++
}

// adminDo sends an admin API request to base and decodes the answer.
func adminDo(t *testing.T, base, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+cliToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %d %s", method, path, resp.StatusCode, b)
		}
	}
	return resp.StatusCode
}

// chatCode sends one small chat and returns its status, or its error code.
func chatCode(t *testing.T, base, secret string) string {
	req, _ := http.NewRequest("POST", base+"/v1/chat/stream", strings.NewReader(`{"model":"hermes","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return "error"
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 429 {
		var e struct{ Error struct{ Code string } }
		json.Unmarshal(b, &e)
		return e.Error.Code
	}
	return fmt.Sprint(resp.StatusCode)
}

// TestReplicasShareBudget: a project's budget made through the admin API
// holds across replicas and both its keys: 60 concurrent requests spend
// past it by less than one request's bound, then every replica refuses
// with insufficient_quota; each threshold's alert arrives once, signed;
// /v1/key agrees with the ledger; a raise reaches every replica.
func TestReplicasShareBudget(t *testing.T) {
	for _, mode := range []string{"redis", "embedded"} {
		t.Run(mode, func(t *testing.T) {
			s := sim.New(sim.Config{ReplyTokens: 7})
			up := httptest.NewServer(s)
			defer up.Close()
			hook := &hookReceiver{ids: map[string]int{}}
			rcv := httptest.NewServer(hook)
			defer rcv.Close()
			env := []string{"TEST_UPSTREAM=" + up.URL + "/v1", "TEST_WEBHOOK_URL=" + rcv.URL, "TEST_WEBHOOK_SECRET=" + hookSecret, "OBOL_ADMIN_TOKEN=" + cliToken}
			replicas := 1
			if mode == "redis" {
				_, prefix := redistest.Shared(t)
				_, pgURL := pgtest.Shared(t)
				env = append(env, "TEST_REDIS_URL="+redistest.URL(), "TEST_REDIS_PREFIX="+prefix, "TEST_POSTGRES_URL="+pgURL)
				replicas = 3
			}
			var bases []string
			for i := 0; i < replicas; i++ {
				_, base, _ := startObolWith(t, "testdata/budget.yaml", append(env, "TEST_DATA_DIR="+t.TempDir())...)
				bases = append(bases, base)
			}
			runBudget(t, bases, hook)
		})
	}
}

func runBudget(t *testing.T, bases []string, hook *hookReceiver) {
	const budget = 200 * money.Money(1_000_000) // $0.0002: 16 requests of $0.0000125
	if code := adminDo(t, bases[0], "POST", "/v1/admin/projects", `{"id":"acme","budget":{"monthly":0.0002}}`, nil); code != 201 {
		t.Fatalf("create the project: %d", code)
	}
	var secrets []string
	for i := 0; i < 2; i++ {
		var k struct{ Secret string }
		if code := adminDo(t, bases[0], "POST", "/v1/admin/keys", `{"tier":"team","project":"acme"}`, &k); code != 201 {
			t.Fatalf("create a key: %d", code)
		}
		secrets = append(secrets, k.Secret)
	}
	poll.Until(t, "every replica to know the keys", func() bool {
		for _, b := range bases {
			if viewKey(t, b, secrets[1]).Project == nil {
				return false
			}
		}
		return true
	})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := 0; i < 60; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := chatCode(t, bases[i%len(bases)], secrets[i%2])
			mu.Lock()
			codes[c]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	t.Logf("60 at once: %v", codes)
	// What is left is spent one request at a time, then every replica
	// refuses.
	for i := 0; ; i++ {
		c := chatCode(t, bases[i%len(bases)], secrets[i%2])
		if c == "insufficient_quota" {
			break
		}
		if i > 100 {
			t.Fatalf("never refused: %s", c)
		}
		codes[c]++
		time.Sleep(10 * time.Millisecond) // let the settlement land: a rate_limit here is a hold
	}
	for _, b := range bases {
		if c := chatCode(t, b, secrets[1]); c != "insufficient_quota" {
			t.Errorf("%s after the budget: %s", b, c)
		}
	}
	spent := projectSpend(t, bases[0], int64(codes["200"]))
	price := money.Price{Input: 500_000, Output: 1_500_000}
	bound := price.Cost(money.Tokens{Prompt: 20, Completion: 20})
	if spent < budget || spent >= budget+bound {
		t.Errorf("%d admitted spent %s of %s (bound %s)", codes["200"], spent.USD(), budget.USD(), bound.USD())
	}
	for _, b := range bases {
		v := viewKey(t, b, secrets[0])
		if v.Project == nil || v.Project.Budget == nil || usd(t, string(v.Project.Budget.Spent)) != spent || v.Project.Budget.Remaining != "0" {
			t.Errorf("%s: GET /v1/key project budget %+v, ledger %s", b, v.Project.Budget, spent.USD())
		}
	}
	poll.Until(t, "three alerts", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		return len(hook.events) >= 3
	})
	time.Sleep(200 * time.Millisecond) // a fourth would be a duplicate
	hook.mu.Lock()
	if len(hook.events) != 3 || len(hook.ids) != 3 || hook.bad != 0 {
		t.Errorf("alerts: %d events, %d ids, %d badly signed: %v", len(hook.events), len(hook.ids), hook.bad, hook.events)
	}
	hook.mu.Unlock()
	// A raise on one replica reaches every replica.
	if code := adminDo(t, bases[0], "PATCH", "/v1/admin/projects/acme", `{"budget":{"monthly":1}}`, nil); code != 200 {
		t.Fatalf("raise: %d", code)
	}
	start := time.Now()
	for _, b := range bases {
		poll.Until(t, "the raise", func() bool { return chatCode(t, b, secrets[0]) == "200" })
	}
	t.Logf("the raise admitted on every replica after %s", time.Since(start).Round(time.Millisecond))
}

// keyBudgetView is what GET /v1/key says of the project's budget; money
// is a JSON number, read as its text so that it parses exactly.
type keyBudgetView struct {
	Project *struct {
		Budget *struct {
			Spent     json.Number `json:"spent"`
			Remaining json.Number `json:"remaining"`
		} `json:"budget"`
	} `json:"project"`
}

func viewKey(t *testing.T, base, secret string) keyBudgetView {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/key", nil)
	req.Header.Set("Authorization", "Bearer "+secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v keyBudgetView
	json.NewDecoder(resp.Body).Decode(&v)
	return v
}

// projectSpend waits for the ledger to hold n requests of project acme
// and returns their cost.
func projectSpend(t *testing.T, base string, n int64) money.Money {
	t.Helper()
	var spent money.Money
	poll.Until(t, fmt.Sprintf("%d requests of acme in the ledger", n), func() bool {
		var u struct {
			Projects map[string]struct {
				TotalCost json.Number          `json:"total_cost"`
				ByModel   map[string]usage.Row `json:"by_model"`
			} `json:"projects"`
		}
		adminDo(t, base, "GET", "/v1/admin/usage?project=acme", "", &u)
		p := u.Projects["acme"]
		spent = usd(t, string(p.TotalCost))
		return p.ByModel["hermes"].Requests == n
	})
	return spent
}

func usd(t *testing.T, s string) money.Money {
	t.Helper()
	m, err := money.ParseUSD(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return m
}
