package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// adversarial are chat bodies whose text the old estimate (content
// characters / 4) missed or undercounted, each capped at 20 output
// tokens: tool-call arguments, tool definitions, a response schema, CJK,
// emoji, and many one-character messages.
func adversarial() map[string]string {
	var args string
	for i := range 60 {
		args += fmt.Sprintf(`\"k%d\":\"%s\",`, i, strings.Repeat("v", 40))
	}
	tools := make([]string, 8)
	for i := range tools {
		tools[i] = fmt.Sprintf(`{"type":"function","function":{"name":"tool_%d","description":"%s","parameters":{"type":"object","properties":{"a":{"type":"string","description":"<%s> & more"}}}}}`,
			i, strings.Repeat("Reads a file, returns: its lines. ", 6), strings.Repeat("x", 30))
	}
	ones := make([]string, 60)
	for i := range ones {
		ones[i] = `{"role":"user","content":"a"}`
	}
	msg := func(s string) string { return `[{"role":"user","content":"` + s + `"}]` }
	body := func(messages, extra string) string {
		return `{"model":"hermes","max_tokens":20,"messages":` + messages + extra + `}`
	}
	return map[string]string{
		"tool-call arguments": body(`[{"role":"user","content":"go"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"write","arguments":"{`+args+`\"end\":1}"}}]},{"role":"tool","tool_call_id":"call_1","content":"ok"}]`, ""),
		"tool definitions":    body(msg("hi"), `,"tools":[`+strings.Join(tools, ",")+`],"tool_choice":"auto"`),
		"response schema":     body(msg("hi"), `,"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"a":{"type":"string","enum":["`+strings.Repeat("x", 1500)+`"]}}}}}`),
		"CJK":                 body(msg(strings.Repeat("日本語の文章", 150)), ""),
		"emoji":               body(msg(strings.Repeat("🙂🚀", 250)), ""),
		"one-character":       body("["+strings.Join(ones, ",")+"]", ""),
	}
}

// unread are the chat members the bound leaves out (docs/billing.md: Budgets).
var unread = map[string]bool{"model": true, "messages": true, "max_tokens": true, "stream": true}

// chatBound is a chat body's cost bound as docs/billing.md documents it: the
// raw bytes of every message (no images here) and of every member the
// model may read, a ',' or ':' counting two and '<', '>', '&' six, plus
// 8 tokens a message and 32 a request, every token at the input price;
// and max_tokens at the output price.
func chatBound(t *testing.T, body string, price money.Price) money.Money {
	t.Helper()
	var fields map[string]json.RawMessage
	var msgs []json.RawMessage
	var max int64
	if json.Unmarshal([]byte(body), &fields) != nil || json.Unmarshal(fields["messages"], &msgs) != nil ||
		json.Unmarshal(fields["max_tokens"], &max) != nil {
		t.Fatalf("not a chat body with max_tokens: %.80s", body)
	}
	measure := func(raw []byte) int64 {
		s := string(raw)
		return int64(len(s) + strings.Count(s, ",") + strings.Count(s, ":") +
			5*(strings.Count(s, "<")+strings.Count(s, ">")+strings.Count(s, "&")))
	}
	tokens := int64(32 + 8*len(msgs))
	for _, m := range msgs {
		tokens += measure(m)
	}
	for name, raw := range fields {
		if !unread[name] {
			tokens += measure(raw)
		}
	}
	return price.Cost(money.Tokens{Prompt: tokens, Completion: max})
}

// nativeCost sends a native chat and returns its status and, for a 200,
// its cost (usage.cost) or, for a 429, its error code.
func nativeCost(t *testing.T, base, key, body string) (int, money.Money, string) {
	req, _ := http.NewRequest("POST", base+"/v1/chat", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return 0, 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out struct {
		Usage struct {
			Cost json.Number `json:"cost"`
		} `json:"usage"`
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	json.Unmarshal(b, &out)
	if resp.StatusCode != 200 {
		return resp.StatusCode, 0, out.Error.Code
	}
	cost, err := money.ParseUSD(string(out.Usage.Cost))
	if err != nil {
		t.Errorf("cost %q: %v", out.Usage.Cost, err)
	}
	return resp.StatusCode, cost, ""
}

// TestBudgetHoldsAgainstTheWorstCase: three replicas sharing Redis and
// one ledger, their backends billing a token per byte of what the model
// reads, spend a key's budget and a project's with adversarial prompts
// from 12 clients at once. Every answer costs at most its documented
// bound; the key's budget (not strict) is passed by less than the largest
// bound of a request, as admission holds bounds; the project's strict
// budget is never passed.
func TestBudgetHoldsAgainstTheWorstCase(t *testing.T) {
	for _, strict := range []bool{false, true} {
		t.Run(map[bool]string{false: "key budget", true: "strict project budget"}[strict], func(t *testing.T) {
			const budget = 10_000_000_000 // $0.01
			ledger := postgresLedger(t)
			rdb, prefix := redistest.Shared(t)
			sub := func(c *envConfig) {
				if strict {
					withProject("acme", quota.Limits{Budget: budget}, keyAll, keyHermes)(c)
					c.projects["acme"].Budget.Strict = true
				} else {
					k := c.keys[keyAll]
					k.Budget = &keys.Budget{Monthly: budget}
					c.keys[keyAll] = k
				}
				c.MaxBodyBytes = 1 << 20
			}
			var replicas []*env
			for range 3 {
				lim := replicaLimiter(t, rdb, prefix, ledger)
				replicas = append(replicas, newEnv(t, sim.Config{ReplyTokens: 20, WorstCase: true, TokensPerSecond: 2000},
					withLedger(ledger), withLimiter(lim), withPrices(money.Prices{hermesPrice}), sub))
			}
			bodies := adversarial()
			var maxBound money.Money
			for _, b := range bodies {
				maxBound = max(maxBound, chatBound(t, b, hermesPrice))
			}
			names := make([]string, 0, len(bodies))
			for n := range bodies {
				names = append(names, n)
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			admitted := 0
			for w := range 12 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; ; i++ {
						name := names[i%len(names)]
						key := []string{keyAll, keyHermes}[i%2]
						if !strict {
							key = keyAll
						}
						status, cost, code := nativeCost(t, replicas[i%3].gw.URL, key, bodies[name])
						switch {
						case status == 200:
							if b := chatBound(t, bodies[name], hermesPrice); cost > b {
								t.Errorf("%s cost $%s, over its bound $%s", name, cost.USD(), b.USD())
							}
							mu.Lock()
							admitted++
							mu.Unlock()
						case code == "insufficient_quota":
							return
						case code != "rate_limit": // held by requests in flight: again
							t.Errorf("%s: %d %s", name, status, code)
							return
						}
					}
				}()
			}
			wg.Wait()
			var spent money.Money
			poll.Until(t, "every admitted request recorded", func() bool {
				a, h := replicas[0].usageOf(t, keyAll, ""), replicas[0].usageOf(t, keyHermes, "")
				spent = a.TotalCost + h.TotalCost
				return requests(a)+requests(h) == int64(admitted)
			})
			t.Logf("%d admitted; spent $%s of $%s; the largest bound $%s", admitted, spent.USD(), money.Money(budget).USD(), maxBound.USD())
			switch {
			case strict && spent > budget:
				t.Errorf("a strict budget of $%s was passed: $%s spent", money.Money(budget).USD(), spent.USD())
			case spent >= budget+maxBound:
				t.Errorf("spent $%s of $%s: passed by more than one request's bound ($%s)", spent.USD(), money.Money(budget).USD(), maxBound.USD())
			case spent < budget/2:
				t.Errorf("only $%s of $%s spent before every client was refused", spent.USD(), money.Money(budget).USD())
			}
		})
	}
}

// TestStrictBudgetCoversEveryAPI: on every route that calls a model, a
// request's bound covers what a backend billing the worst case charges:
// a key whose strict budget is a picodollar less than what the request
// cost is refused it (insufficient_quota, the backend not called), and
// one with room is served.
func TestStrictBudgetCoversEveryAPI(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 20, WorstCase: true}, withAdmin(t), withAPIs, withPrices(money.Prices{hermesPrice}),
		func(c *envConfig) { c.MaxBodyBytes = 1 << 20 })
	args := `{\"path\":\"` + strings.Repeat("日本", 300) + `\",\"body\":\"` + strings.Repeat("<p>, ", 300) + `\"}`
	for _, tt := range []struct{ name, path, body string }{
		{"chat, tool-call arguments", "/v1/chat/completions", adversarial()["tool-call arguments"]},
		{"chat, tool definitions, streamed", "/v1/chat/completions", strings.Replace(adversarial()["tool definitions"], `"max_tokens":20`, `"max_tokens":20,"stream":true`, 1)},
		{"responses, a function call", "/v1/responses", `{"model":"hermes","max_output_tokens":20,"instructions":"be brief","input":[{"role":"user","content":"go"},` +
			`{"type":"function_call","call_id":"call_1","name":"write","arguments":"` + args + `"},{"type":"function_call_output","call_id":"call_1","output":"ok"}],` +
			`"tools":[{"type":"function","name":"write","description":"` + strings.Repeat("Writes: a file. ", 20) + `","parameters":{"type":"object"}}]}`},
		{"legacy completions", "/v1/completions", `{"model":"hermes","max_tokens":20,"prompt":["` + strings.Repeat("日本語, ", 200) + `","` + strings.Repeat("a:", 300) + `"]}`},
		{"embeddings", "/v1/embeddings", `{"model":"hermes","input":["` + strings.Repeat("🙂", 300) + `","` + strings.Repeat("<&>", 200) + `"]}`},
		{"messages, tool use and its result, streamed", "/v1/messages", `{"model":"hermes","max_tokens":20,"stream":true,"system":[{"type":"text","text":"be brief"}],` +
			`"messages":[{"role":"user","content":"go"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"write","input":` + strings.ReplaceAll(args, `\"`, `"`) + `}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"` + strings.Repeat("ok, <done> ", 50) + `"}]},{"role":"system","content":"` + strings.Repeat("日本", 100) + `"}],` +
			`"tools":[{"name":"write","description":"` + strings.Repeat("Writes: a file. ", 20) + `","input_schema":{"type":"object","properties":{"path":{"type":"string"}}}}]}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			free := e.createKey(t, `{"tier":"team"}`)
			resp, body := e.do(t, "POST", tt.path, free.Secret, tt.body)
			if resp.StatusCode != 200 {
				t.Fatalf("unbudgeted: %d %s", resp.StatusCode, body)
			}
			cost := e.ledgerCost(t, free.ID)
			if cost == 0 {
				t.Fatal("the request cost nothing")
			}
			tight := e.createKey(t, fmt.Sprintf(`{"tier":"team","budget":{"monthly":%s,"strict":true}}`, (cost-1).USD()))
			before := e.sim.Stats().Requests
			resp, body = e.do(t, "POST", tt.path, tight.Secret, tt.body)
			refused := `"code":"insufficient_quota"`
			if strings.HasPrefix(tt.path, "/v1/messages") {
				refused = `{"type":"error","error":{"type":"rate_limit_error","message":"Budget exceeded`
			}
			if resp.StatusCode != 429 || !strings.Contains(string(body), refused) || e.sim.Stats().Requests != before {
				t.Errorf("a strict budget of $%s, the request having cost $%s: %d %s", (cost - 1).USD(), cost.USD(), resp.StatusCode, body)
			}
			roomy := e.createKey(t, `{"tier":"team","budget":{"monthly":1,"strict":true}}`)
			if resp, body = e.do(t, "POST", tt.path, roomy.Secret, tt.body); resp.StatusCode != 200 {
				t.Errorf("a strict budget of $1: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// ledgerCost waits for key's request to be recorded and returns what it
// cost.
func (e *env) ledgerCost(t *testing.T, keyID string) money.Money {
	t.Helper()
	var cost money.Money
	poll.Until(t, "the request recorded", func() bool {
		s, err := e.ledger.Summary(t.Context(), keyID, time.Now().UTC().Format("2006-01"))
		if err != nil {
			t.Fatal(err)
		}
		cost = s.TotalCost
		return requests(*s) == 1
	})
	return cost
}
