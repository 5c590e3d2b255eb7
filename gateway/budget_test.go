package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// small is a request whose cost bound is small: 20 output tokens at most.
const small = `{"model":"hermes","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`

// keyBudget is what GET /v1/key says of a budget.
type keyBudget struct {
	Monthly   json.Number `json:"monthly"`
	Spent     json.Number `json:"spent"`
	Held      json.Number `json:"held"`
	Remaining json.Number `json:"remaining"`
	AlertAt   []float64   `json:"alert_at"`
}

type keyView struct {
	Spend struct {
		Cost json.Number `json:"cost"`
	} `json:"spend"`
	Budget  *keyBudget `json:"budget"`
	Project *struct {
		ID    string `json:"id"`
		Spend *struct {
			Cost json.Number `json:"cost"`
		} `json:"spend"`
		Budget *keyBudget `json:"budget"`
	} `json:"project"`
}

func (e *env) keyView(t *testing.T, key string) keyView {
	t.Helper()
	resp := e.get(t, "/v1/key", key)
	var v keyView
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /v1/key: %d %v", resp.StatusCode, err)
	}
	return v
}

// TestProjectBudget: a project's budget is spent by both its keys, one
// request at a time: requests are admitted until the ledger's spend
// reaches the budget, then refused with insufficient_quota naming the
// budget; /v1/key's spend equals /v1/usage's.
func TestProjectBudget(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[shared], func(t *testing.T) {
			const budget = 100_000_000 // $0.0001: eight requests of $0.0000125
			opts := []envOption{withPrices(money.Prices{hermesPrice}),
				withProject("acme", quota.Limits{Budget: budget}, keyAll, keyHermes)}
			if shared {
				opts = append(opts, withLimiter(redisLimiter(t)))
			}
			e := newEnv(t, sim.Config{ReplyTokens: 7}, opts...)
			admitted := 0
			var refusal apiError
			for i := 0; i < 20; i++ {
				resp := e.post(t, "/v1/chat", []string{keyAll, keyHermes}[i%2], small)
				if resp.StatusCode == 429 {
					if resp.Header.Get("X-Should-Retry") != "false" || resp.Header.Get("Retry-After") == "" {
						t.Errorf("budget refusal headers: %v", resp.Header)
					}
					refusal = readError(t, resp)
					break
				}
				io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: %d", i, resp.StatusCode)
				}
				admitted++
				poll.Until(t, "the request settled and recorded", func() bool {
					p := e.keyView(t, keyAll).Project
					n := requests(e.usageOf(t, keyAll, "")) + requests(e.usageOf(t, keyHermes, ""))
					return p != nil && p.Budget != nil && p.Budget.Held == "0" && n == int64(admitted)
				})
			}
			if refusal.Error.Code != "insufficient_quota" || refusal.Error.Type != "insufficient_quota" ||
				!strings.Contains(refusal.Error.Message, "project acme has reached its monthly budget of $0.0001") {
				t.Fatalf("after %d requests: %+v", admitted, refusal)
			}
			if testing.Verbose() {
				t.Log(refusal.Error.Message)
			}
			a, h := e.usageOf(t, keyAll, ""), e.usageOf(t, keyHermes, "")
			spent := a.TotalCost + h.TotalCost
			perRequest := spent / money.Money(admitted)
			if spent < budget || spent-perRequest >= budget {
				t.Errorf("%d requests spent %s: the last was admitted past the budget, or one more could have been", admitted, spent.USD())
			}
			v := e.keyView(t, keyHermes)
			if v.Project == nil || v.Project.Budget == nil || usd(t, string(v.Project.Budget.Spent)) != spent ||
				v.Project.Budget.Remaining != "0" || len(v.Project.Budget.AlertAt) != 3 {
				t.Errorf("GET /v1/key project: %+v %+v", v.Project, v.Project.Budget)
			}
			if usd(t, string(v.Spend.Cost)) != h.TotalCost || v.Budget != nil {
				t.Errorf("GET /v1/key: the key's own spend %s (want %s), budget %+v", v.Spend.Cost, h.TotalCost.USD(), v.Budget)
			}
		})
	}
}

// TestBudgetConcurrentRequests: 30 requests at once against a budget of
// about six: spend passes the budget by less than one request's bound;
// the refusals are insufficient_quota once it is spent, rate_limit while
// it is only held by requests in flight.
func TestBudgetConcurrentRequests(t *testing.T) {
	const budget = 80_000_000
	e := newEnv(t, sim.Config{ReplyTokens: 7}, withPrices(money.Prices{hermesPrice}), withLimiter(redisLimiter(t)),
		withProject("acme", quota.Limits{Budget: budget}, keyAll, keyHermes))
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[string]int{}
	for i := 0; i < 30; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := e.post(t, "/v1/chat/stream", []string{keyAll, keyHermes}[i%2], small)
			code := fmt.Sprint(resp.StatusCode)
			if resp.StatusCode == 429 {
				code = readError(t, resp).Error.Code
			}
			io.Copy(io.Discard, resp.Body)
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes["200"] == 0 || codes["200"]+codes["insufficient_quota"]+codes["rate_limit"] != 30 {
		t.Fatalf("answers %v", codes)
	}
	n := int64(codes["200"])
	var spent money.Money
	poll.Until(t, "every admitted request recorded", func() bool {
		a, h := e.usageOf(t, keyAll, ""), e.usageOf(t, keyHermes, "")
		spent = a.TotalCost + h.TotalCost
		return requests(a)+requests(h) == n
	})
	bound := hermesPrice.Cost(money.Tokens{Prompt: 20, Completion: 20}) // well over a request's prompt and its 20 tokens
	if spent >= budget+bound {
		t.Errorf("%d admitted spent %s of a budget of %s", n, spent.USD(), money.Money(budget).USD())
	}
	for spent < budget { // what is left is spent one request at a time
		resp := e.post(t, "/v1/chat", keyAll, small)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s left: %d", (budget - spent).USD(), resp.StatusCode)
		}
		n++
		poll.Until(t, "recorded", func() bool {
			a, h := e.usageOf(t, keyAll, ""), e.usageOf(t, keyHermes, "")
			spent = a.TotalCost + h.TotalCost
			return requests(a)+requests(h) == n && e.keyView(t, keyAll).Project.Budget.Held == "0"
		})
	}
	if code := readError(t, e.post(t, "/v1/chat", keyHermes, small)).Error.Code; code != "insufficient_quota" {
		t.Errorf("spent %s of %s: %s", spent.USD(), money.Money(budget).USD(), code)
	}
}

// TestKeyBudgetAdmin: a key's own budget set through the admin API is
// enforced, shown by /v1/key, and a raise takes effect at once.
func TestKeyBudgetAdmin(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 7}, withPrices(money.Prices{hermesPrice}), withAdmin(t))
	k := e.createKey(t, `{"tier":"pro","budget":{"monthly":0.00001,"alert_at":[0.5,1]}}`)
	resp, body := e.do(t, "GET", "/v1/admin/keys/"+k.ID, adminToken, "")
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"budget":{"monthly":0.00001,"alert_at":[0.5,1],"strict":false}`) {
		t.Fatalf("the key's budget: %s", body)
	}
	for i := 0; ; i++ {
		resp := e.post(t, "/v1/chat", k.Secret, small)
		if resp.StatusCode == 429 {
			if msg := readError(t, resp).Error.Message; !strings.Contains(msg, "this API key has reached its monthly budget of $0.00001") {
				t.Fatalf("refusal: %s", msg)
			}
			break
		}
		io.Copy(io.Discard, resp.Body)
		if i > 10 {
			t.Fatal("the budget never stopped the key")
		}
		poll.Until(t, "settled", func() bool {
			b := e.keyView(t, k.Secret).Budget
			return b != nil && b.Held == "0" && b.Spent != "0"
		})
	}
	v := e.keyView(t, k.Secret)
	if v.Budget == nil || v.Budget.Monthly != "0.00001" || len(v.Budget.AlertAt) != 2 || v.Budget.Spent != v.Spend.Cost {
		t.Errorf("GET /v1/key budget %+v, spend %s", v.Budget, v.Spend.Cost)
	}
	if resp, body := e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, `{"budget":{"monthly":1}}`); resp.StatusCode != 200 {
		t.Fatalf("raise: %d %s", resp.StatusCode, body)
	}
	if resp := e.post(t, "/v1/chat", k.Secret, small); resp.StatusCode != 200 {
		t.Errorf("after the raise: %d", resp.StatusCode)
	}
	for _, bad := range []string{`{"budget":{"monthly":-1}}`, `{"budget":{"monthly":1,"alert_at":[0.8,0.5]}}`,
		`{"budget":{"monthly":"1"}}`, `{"budget":{"monthly":1,"alerts":[1]}}`, `{"budget":{"monthly":1e-13}}`} {
		if resp, body := e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, bad); resp.StatusCode != 400 || !strings.Contains(string(body), `"param":"budget`) {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
}
