package gateway_test

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/usage"
	"github.com/obol/obol/wire/anthropic"
)

// claudePrice is a price with Anthropic's cache multipliers: reads at
// 0.1 × input, 5-minute writes at 1.25 ×, 1-hour writes at 2 ×.
var claudePrice = money.Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000}

// withAnthropicBackend makes hermes's backend speak Anthropic's Messages
// API, with an API key.
func withAnthropicBackend(c *envConfig) {
	c.models[0].Backends[0].Dialect = models.Anthropic
	c.models[0].Backends[0].APIKey = "sk-ant-backend"
	c.models[0].Backends[0].Model = "claude-backend-1"
}

// anthropicCost is a request's cost by Anthropic's published rules,
// computed apart from obol's: input_tokens (neither read nor written) at
// the input price, cache_read_input_tokens at the read price, each
// lifetime's cache writes at its write price, output at the output price.
func anthropicCost(p money.Price, input, read, w5, w1, output int64) money.Money {
	return money.Money(input)*p.Input + money.Money(read)*p.CachedInput + money.Money(w5)*p.CacheWrite +
		money.Money(w1)*p.CacheWrite1h + money.Money(output)*p.Output
}

// TestAnthropicBackend: every route reaches a model whose backend speaks
// Anthropic's Messages API, in its shape; the backend gets its key,
// anthropic-version and its own model name; and the ledger holds exactly
// what the backend reported, cache reads and writes by lifetime priced
// as Anthropic prices them.
func TestAnthropicBackend(t *testing.T) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run(store, func(t *testing.T) {
			opts := []envOption{withPrices(money.Prices{claudePrice}), withAnthropicBackend}
			if store == "postgres" {
				opts = append(opts, withLedger(postgresLedger(t)))
			}
			// 2 read, 3 written for 5 minutes, 4 for an hour.
			e := newEnv(t, sim.Config{ReplyTokens: 6, CachedTokens: 2, CacheWrite5m: 3, CacheWrite1h: 4}, opts...)
			routes := []struct{ path, body, want string }{
				{"/v1/chat", `{"model":"hermes","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"one two three four five six seven eight nine ten"}]}`, `"object":"chat.completion"`},
				{"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}`, `data: [DONE]`},
				{"/v1/chat/completions", `{"model":"hermes","stop":["zzz"],"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}`, `"finish_reason":"stop"`},
				{"/v1/chat/completions", `{"model":"hermes","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}`, `"cache_write_1h_tokens":4`},
				{"/v1/responses", `{"model":"hermes","input":"one two three four five six seven eight nine ten"}`, `"status":"completed"`},
				{"/v1/responses", `{"model":"hermes","stream":true,"input":"one two three four five six seven eight nine ten"}`, `response.completed`},
				{"/v1/messages", `{"model":"hermes","max_tokens":100,"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}`, `"ephemeral_1h_input_tokens":4`},
				{"/v1/messages", `{"model":"hermes","max_tokens":100,"stream":true,"messages":[{"role":"user","content":"one two three four five six seven eight nine ten"}]}`, `event: message_stop`},
			}
			for _, r := range routes {
				resp := e.post(t, r.path, keyAll, r.body)
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || !strings.Contains(string(body), r.want) || !strings.Contains(strings.ReplaceAll(string(body), `\"`, `"`), "Hello") {
					t.Errorf("%s %s: %d %s", r.path, r.body, resp.StatusCode, body)
				}
				if strings.Contains(string(body), "claude-backend-1") {
					t.Errorf("%s: the backend's model name reached the client: %s", r.path, body)
				}
			}
			for _, rec := range e.sim.Requests() {
				if rec.Header.Get("X-Api-Key") != "sk-ant-backend" || rec.Header.Get("Anthropic-Version") != models.AnthropicVersion ||
					rec.Header.Get("Authorization") != "" || rec.Model != "claude-backend-1" {
					t.Errorf("the backend got %v, model %q", rec.Header, rec.Model)
				}
			}
			st := e.sim.Stats()
			s := e.waitRecorded(t, keyAll, int64(len(routes)))
			h := s.ByModel["hermes"]
			n := int64(len(routes))
			if h.Prompt != st.ReportedPrompt || h.Completion != st.ReportedTokens || h.CachedPrompt != 2*n || h.CacheWrite5m != 3*n || h.CacheWrite1h != 4*n {
				t.Errorf("ledger %+v; the backend reported %d + %d", h, st.ReportedPrompt, st.ReportedTokens)
			}
			want := anthropicCost(claudePrice, h.Prompt-9*n, 2*n, 3*n, 4*n, st.ReportedTokens)
			if h.Cost != want || s.TotalCost != want {
				t.Errorf("cost %s, want %s by Anthropic's rules", h.Cost.USD(), want.USD())
			}
		})
	}
}

// ledgerMatchesAnthropic is TestLedgerMatchesBackend's Anthropic part on
// a store: each way Anthropic reports cache writes is billed exactly, the
// cost computed apart by Anthropic's rules: split by lifetime; only their
// total (older answers: all five-minute writes); a stream cut by the
// backend and one cut by the client (what message_start reported, and
// the output relayed after it).
func ledgerMatchesAnthropic(t *testing.T, store string) {
	opts := []envOption{withPrices(money.Prices{claudePrice}), withAnthropicBackend}
	if store == "postgres" {
		opts = append(opts, withLedger(postgresLedger(t)))
	}
	e := newEnv(t, sim.Config{ReplyTokens: 6, CachedTokens: 5, CacheWrite5m: 1, CacheWrite1h: 2}, opts...)
	body := `{"model":"hermes","max_tokens":50,"messages":[{"role":"user","content":"alpha beta gamma delta epsilon zeta eta theta"}]}`
	streamed := strings.Replace(body, `"max_tokens":50`, `"max_tokens":50,"stream":true`, 1)
	const prompt = 11 // the simulator's count: 8 words and 3 of template
	var last usage.Row
	phase := func(n int64) usage.Row {
		t.Helper()
		h := e.waitRecorded(t, keyAll, last.Requests+n).ByModel["hermes"]
		d := h
		d.Prompt, d.CachedPrompt, d.CacheWrite5m, d.CacheWrite1h = h.Prompt-last.Prompt, h.CachedPrompt-last.CachedPrompt, h.CacheWrite5m-last.CacheWrite5m, h.CacheWrite1h-last.CacheWrite1h
		d.Completion, d.Cost, d.Requests = h.Completion-last.Completion, h.Cost-last.Cost, h.Requests-last.Requests
		last = h
		return d
	}
	check := func(what string, d usage.Row, read, w5, w1, output int64) {
		t.Helper()
		want := anthropicCost(claudePrice, d.Prompt-read-w5-w1, read, w5, w1, output)
		if d.Prompt != d.Requests*prompt || d.CachedPrompt != read || d.CacheWrite5m != w5 || d.CacheWrite1h != w1 || d.Completion != output || d.Cost != want {
			t.Errorf("%s: ledger %+v, want %d prompt tokens a request, reads %d, writes %d + %d, output %d, cost %s", what, d, prompt, read, w5, w1, output, want.USD())
		}
	}
	// Split by lifetime, streamed and not.
	e.send(t, "/v1/messages", body)
	e.send(t, "/v1/messages", streamed)
	check("split", phase(2), 10, 2, 4, 12)

	// Only the total: all five-minute writes.
	e.sim.SetConfig(sim.Config{ReplyTokens: 6, CachedTokens: 5, CacheWrite5m: 1, CacheWrite1h: 2, CacheWriteTotalOnly: true})
	e.send(t, "/v1/messages", body)
	e.send(t, "/v1/messages", streamed)
	check("total only", phase(2), 10, 6, 0, 12)

	// The backend cuts the stream after 3 deltas: message_start reported
	// the prompt whole and 1 output token; 3 more were relayed.
	e.sim.SetConfig(sim.Config{ReplyTokens: 6, CachedTokens: 5, CacheWrite5m: 1, CacheWrite1h: 2, Fault: sim.Fault{Kind: sim.Disconnect, After: 3}})
	e.send(t, "/v1/messages", streamed)
	check("cut by the backend", phase(1), 5, 1, 2, 1+3)
	e.send(t, "/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"alpha beta gamma delta epsilon zeta eta theta"}]}`)
	check("cut by the backend, on Chat Completions", phase(1), 5, 1, 2, 1+3)

	// The client leaves after reading 3 deltas: charged message_start's
	// report and what was relayed, no more than the backend made.
	e.sim.SetConfig(sim.Config{ReplyTokens: 200, TokensPerSecond: 200, CachedTokens: 5, CacheWrite5m: 1, CacheWrite1h: 2})
	before := e.sim.Stats()
	resp := e.post(t, "/v1/messages", keyAll, streamed)
	er := bufio.NewReader(resp.Body)
	for n := 0; n < 3; {
		line, err := er.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "event: content_block_delta") {
			n++
		}
	}
	resp.Body.Close()
	d := phase(1)
	poll.Until(t, "the backend to see the stream end", func() bool { return e.sim.Stats().Cancelled > before.Cancelled })
	generated := e.sim.Stats().CompletionTokens - before.CompletionTokens
	if d.Completion < 1+3 || d.Completion > 1+generated {
		t.Errorf("cut by the client: %d output tokens charged; the client read 3, the backend generated %d", d.Completion, generated)
	}
	check("cut by the client", d, 5, 1, 2, d.Completion)
}

// TestAnthropicPassThrough: /v1/messages to an Anthropic backend sends
// the client's request as written (thinking blocks and their signatures,
// cache_control), with the backend's model name and the client's
// anthropic-beta, and relays the answer's events as the backend wrote
// them, with the gateway's id and the public model name.
func TestAnthropicPassThrough(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4}, withAnthropicBackend)
	thinking := `{"type":"thinking","thinking":"Let me think \u003cabout\u003e it.","signature":"EqQBCkYIBxgCKkBsig=="}`
	body := `{"model":"hermes","max_tokens":64,"stream":true,"system":[{"type":"text","text":"You are terse.","cache_control":{"type":"ephemeral","ttl":"1h"}}],` +
		`"messages":[{"role":"user","content":"hello"},{"role":"assistant","content":[` + thinking + `,{"type":"text","text":"Hi."}]},{"role":"user","content":"again"}]}`
	req, _ := http.NewRequest("POST", e.gw.URL+"/v1/messages?beta=true", strings.NewReader(body))
	req.Header.Set("x-api-key", keyAll)
	req.Header.Set("anthropic-version", "2023-06-01")
	req.Header.Set("anthropic-beta", "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var events []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			events = append(events, name)
		}
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok && strings.Contains(data, "message_start") &&
			(!strings.Contains(data, `"model":"hermes"`) || !strings.Contains(data, `"id":"msg_`) || strings.Contains(data, "msg-sim")) {
			t.Errorf("message_start: %s", data)
		}
	}
	if got := strings.Join(events, " "); got != "message_start content_block_start ping content_block_delta content_block_delta content_block_delta content_block_delta content_block_stop message_delta message_stop" {
		t.Errorf("events: %s", got)
	}
	recs := e.sim.Requests()
	if len(recs) != 1 {
		t.Fatalf("%d backend requests", len(recs))
	}
	sent := string(recs[0].Body)
	if !strings.Contains(sent, thinking) || !strings.Contains(sent, `"cache_control":{"type":"ephemeral","ttl":"1h"}`) ||
		!strings.HasPrefix(sent, `{"model":"claude-backend-1",`) || strings.Count(sent, `"model"`) != 1 {
		t.Errorf("the backend got %s", sent)
	}
	if b := recs[0].Header.Get("Anthropic-Beta"); b != "interleaved-thinking-2025-05-14,prompt-caching-2024-07-31" {
		t.Errorf("anthropic-beta %q", b)
	}
}

// TestMixedBackends: a model with an Anthropic backend and an OpenAI
// one fails over between them both ways (529 overloaded_error from the
// one, 503 from the other), and the client cannot tell which answered.
func TestMixedBackends(t *testing.T) {
	openaiSim := sim.New(sim.Config{ReplyTokens: 6})
	up := httptest.NewServer(openaiSim)
	t.Cleanup(up.Close)
	e := newEnv(t, sim.Config{ReplyTokens: 6}, withAnthropicBackend, func(c *envConfig) {
		c.models[0].Backends = append(c.models[0].Backends, models.Backend{Name: "openai", URL: up.URL + "/v1", Model: "gpt-backend", Priority: 1})
	})
	body := `{"model":"hermes","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi there"}]}`
	shape := func(raw []byte) string {
		var keys []string
		for _, line := range strings.Split(string(raw), "\n") {
			if data, ok := strings.CutPrefix(line, "data: "); ok && data != "[DONE]" {
				var m map[string]any
				json.Unmarshal([]byte(data), &m)
				delete(m, "id")
				delete(m, "created")
				b, _ := json.Marshal(m)
				keys = append(keys, string(b))
			}
		}
		return strings.Join(keys, "\n")
	}
	resp := e.post(t, "/v1/chat/completions", keyAll, body)
	viaAnthropic, _ := io.ReadAll(resp.Body)
	e.sim.SetConfig(sim.Config{ReplyTokens: 6, Fault: sim.Fault{Kind: sim.Status, Status: 529}})
	resp = e.post(t, "/v1/chat/completions", keyAll, body)
	viaOpenAI, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || openaiSim.Stats().Requests != 1 {
		t.Fatalf("after a 529: %d %s", resp.StatusCode, viaOpenAI)
	}
	if a, o := shape(viaAnthropic), shape(viaOpenAI); a != o {
		t.Errorf("the answers differ by backend:\n%s\n---\n%s", a, o)
	}
	poll.Until(t, "both recorded", func() bool { return requests(e.usageOf(t, keyAll, "")) == 2 })
	for _, path := range []string{"/v1/messages"} {
		resp := e.post(t, path, keyAll, `{"model":"hermes","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`)
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(raw), `"type":"message"`) {
			t.Errorf("%s after a 529, via the OpenAI backend: %d %s", path, resp.StatusCode, raw)
		}
	}
}

// TestStrictBudgetHoldsCacheWrites: toward an Anthropic backend a prompt
// may be billed as a one-hour cache write, at twice the input price; a
// strict budget holds that worst case, so a budget a picodollar short of
// what the request cost refuses it before any backend is called.
func TestStrictBudgetHoldsCacheWrites(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 10, WorstCase: true, CacheWrite1h: 1 << 30}, withAdmin(t), withAnthropicBackend,
		withPrices(money.Prices{claudePrice}))
	body := `{"model":"hermes","max_tokens":10,"messages":[{"role":"user","content":"` + strings.Repeat("a ", 400) + `"}]}`
	free := e.createKey(t, `{"tier":"team"}`)
	if resp, raw := e.do(t, "POST", "/v1/messages", free.Secret, body); resp.StatusCode != 200 {
		t.Fatalf("unbudgeted: %d %s", resp.StatusCode, raw)
	}
	cost := e.ledgerCost(t, free.ID)
	tight := e.createKey(t, fmt.Sprintf(`{"tier":"team","budget":{"monthly":%s,"strict":true}}`, (cost-1).USD()))
	before := e.sim.Stats().Requests
	if resp, raw := e.do(t, "POST", "/v1/messages", tight.Secret, body); resp.StatusCode != 429 || e.sim.Stats().Requests != before {
		t.Errorf("a strict budget of $%s, the request having cost $%s: %d %s", (cost - 1).USD(), cost.USD(), resp.StatusCode, raw)
	}
}

// TestAnthropicAdminReports: Anthropic's Messages usage report and cost
// report show the ledger in Anthropic's terms, on both stores: uncached
// input, cache reads, cache writes by lifetime, output, the cost in
// cents; grouped by model, key and workspace (a project); paged by a
// cursor; unknown parameters refused by name.
func TestAnthropicAdminReports(t *testing.T) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run(store, func(t *testing.T) {
			opts := []envOption{withPrices(money.Prices{claudePrice}), withAnthropicBackend, withEmbeddedAdmin(t)}
			if store == "postgres" {
				opts = append(opts, withLedger(postgresLedger(t)))
			}
			e := newEnv(t, sim.Config{ReplyTokens: 6, CachedTokens: 2, CacheWrite5m: 3, CacheWrite1h: 4}, opts...)
			for i := 0; i < 3; i++ {
				e.send(t, "/v1/messages", `{"model":"hermes","max_tokens":20,"messages":[{"role":"user","content":"one two three four five six seven"}]}`)
			}
			row := e.waitRecorded(t, keyAll, 3).ByModel["hermes"]
			today := time.Now().UTC().Truncate(24 * time.Hour)
			start := today.AddDate(0, 0, -1).Format(time.RFC3339)
			resp, body := e.do(t, "GET", "/v1/organizations/usage_report/messages?starting_at="+start+"&group_by[]=model&group_by[]=api_key_id&limit=1", adminToken, "")
			var page struct {
				Data []struct {
					StartingAt string           `json:"starting_at"`
					Results    []map[string]any `json:"results"`
				} `json:"data"`
				HasMore  bool    `json:"has_more"`
				NextPage *string `json:"next_page"`
			}
			json.Unmarshal(body, &page)
			if resp.StatusCode != 200 || len(page.Data) != 1 || len(page.Data[0].Results) != 0 || !page.HasMore || page.NextPage == nil {
				t.Fatalf("yesterday's page: %d %s", resp.StatusCode, body)
			}
			resp, body = e.do(t, "GET", "/v1/organizations/usage_report/messages?starting_at="+start+"&group_by[]=model&group_by[]=api_key_id&limit=1&page="+*page.NextPage, adminToken, "")
			json.Unmarshal(body, &page)
			want := fmt.Sprintf(`"api_key_id":"key_all","cache_creation":{"ephemeral_1h_input_tokens":%d,"ephemeral_5m_input_tokens":%d},"cache_read_input_tokens":%d,"context_window":null,"model":"hermes","output_tokens":%d,"server_tool_use":{"web_search_requests":0},"service_tier":null,"uncached_input_tokens":%d,"workspace_id":null`,
				row.CacheWrite1h, row.CacheWrite5m, row.CachedPrompt, row.Completion, row.Prompt-row.CachedPrompt-row.CacheWrite5m-row.CacheWrite1h)
			if resp.StatusCode != 200 || page.Data[0].StartingAt != today.Format(time.RFC3339) || !strings.Contains(string(body), want) || page.HasMore {
				t.Errorf("today's page: %d %s\nwant %s", resp.StatusCode, body, want)
			}
			resp, body = e.do(t, "GET", "/v1/organizations/cost_report?starting_at="+today.Format(time.RFC3339)+"&group_by[]=description", adminToken, "")
			cost := row.Cost / (money.PerDollar / 100) // whole cents, then the rest
			if resp.StatusCode != 200 || !strings.Contains(string(body), `"amount":"`+strings.TrimRight(strings.TrimRight(fmt.Sprintf("%d.%010d", cost, row.Cost%(money.PerDollar/100)), "0"), ".")+`"`) ||
				!strings.Contains(string(body), `"description":"hermes usage"`) {
				t.Errorf("cost report: %d %s (cost %s)", resp.StatusCode, body, row.Cost.USD())
			}
			if resp, body = e.do(t, "GET", "/v1/organizations/usage_report/messages?starting_at="+start+"&service_tiers[]=batch", adminToken, ""); resp.StatusCode != 400 || !strings.Contains(string(body), "service_tiers") {
				t.Errorf("an unknown parameter: %d %s", resp.StatusCode, body)
			}
			if resp, _ = e.do(t, "GET", "/v1/organizations/cost_report?starting_at="+start, keyAll, ""); resp.StatusCode != 401 {
				t.Errorf("an API key on the cost report: %d", resp.StatusCode)
			}
		})
	}
}

// TestAnthropicBackendTranslation: toward an Anthropic backend, a chat
// tool call streams its arguments in pieces and comes back as a
// tool_result; what has no Messages equivalent is a 400 naming it, unless
// another backend of the model can take it; the backend's own 400 is the
// client's, in the route's shape.
func TestAnthropicBackendTranslation(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3}, withAnthropicBackend)
	resp := e.post(t, "/v1/chat/completions", keyAll, `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"weather?"}]`+weatherTools+`}`)
	raw, _ := io.ReadAll(resp.Body)
	var args strings.Builder
	var id, finish string
	for _, line := range strings.Split(string(raw), "\n") {
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ch struct {
			Choices []struct {
				Delta struct {
					ToolCalls []struct {
						ID       string `json:"id"`
						Function struct {
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		json.Unmarshal([]byte(data), &ch)
		for _, c := range ch.Choices {
			for _, tc := range c.Delta.ToolCalls {
				id += tc.ID
				args.WriteString(tc.Function.Arguments)
			}
			if c.FinishReason != nil {
				finish = *c.FinishReason
			}
		}
	}
	if resp.StatusCode != 200 || args.String() != sim.ToolArguments || finish != "tool_calls" || !strings.HasPrefix(id, "toolu_") {
		t.Fatalf("a streamed tool call: %d id %q args %q finish %q\n%s", resp.StatusCode, id, args.String(), finish, raw)
	}
	back := `{"model":"hermes","messages":[{"role":"user","content":"weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"` + id +
		`","type":"function","function":{"name":"get_weather","arguments":` + strconv.Quote(sim.ToolArguments) + `}}]},{"role":"tool","tool_call_id":"` + id + `","content":"sunny"}]` + weatherTools + `}`
	if resp, raw := e.do(t, "POST", "/v1/chat/completions", keyAll, back); resp.StatusCode != 200 || !strings.Contains(string(raw), "Hello from the") {
		t.Errorf("the tool's result: %d %s", resp.StatusCode, raw)
	}
	recs := e.sim.Requests()
	if sent := string(recs[len(recs)-1].Body); !strings.Contains(sent, `{"type":"tool_use","id":"`+id+`","name":"get_weather","input":{"location":"Paris","unit":"celsius"}}`) ||
		!strings.Contains(sent, `{"type":"tool_result","tool_use_id":"`+id+`","content":"sunny"}`) {
		t.Errorf("the backend got %s", sent)
	}

	for _, tt := range []struct{ body, param string }{
		{`{"model":"hermes","n":2,"messages":[{"role":"user","content":"hi"}]}`, `"param":"n"`},
		{`{"model":"hermes","logprobs":true,"messages":[{"role":"user","content":"hi"}]}`, `"param":"logprobs"`},
		{`{"model":"hermes","response_format":{"type":"json_object"},"messages":[{"role":"user","content":"hi"}]}`, `"param":"response_format"`},
	} {
		before := e.sim.Stats().Requests
		if resp, raw := e.do(t, "POST", "/v1/chat/completions", keyAll, tt.body); resp.StatusCode != 400 || !strings.Contains(string(raw), tt.param) || e.sim.Stats().Requests != before {
			t.Errorf("%s: %d %s", tt.body, resp.StatusCode, raw)
		}
	}
	e.sim.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 400}})
	if resp, raw := e.do(t, "POST", "/v1/chat/completions", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 400 ||
		!strings.Contains(string(raw), `"code":"bad_request"`) || !strings.Contains(string(raw), "simulated failure") {
		t.Errorf("the backend's 400 on Chat Completions: %d %s", resp.StatusCode, raw)
	}
	if resp, raw := e.do(t, "POST", "/v1/messages", keyAll, `{"model":"hermes","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 400 ||
		!strings.Contains(string(raw), `{"type":"error","error":{"type":"invalid_request_error"`) {
		t.Errorf("the backend's 400 on Messages: %d %s", resp.StatusCode, raw)
	}

	// With an OpenAI backend beside it, n: 2 goes there.
	mixed := newEnv(t, sim.Config{ReplyTokens: 3}, withAnthropicBackend, func(c *envConfig) {
		other := sim.New(sim.Config{ReplyTokens: 3})
		up := httptest.NewServer(other)
		t.Cleanup(up.Close)
		c.models[0].Backends = append(c.models[0].Backends, models.Backend{Name: "openai", URL: up.URL + "/v1", Model: "gpt", Priority: 1})
	})
	if resp, raw := mixed.do(t, "POST", "/v1/chat/completions", keyAll, `{"model":"hermes","n":2,"messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 ||
		strings.Count(string(raw), `"finish_reason"`) != 2 || mixed.sim.Stats().Requests != 0 {
		t.Errorf("n: 2 with an OpenAI backend beside: %d %s", resp.StatusCode, raw)
	}
}

// TestAnthropicDocuments: document blocks (a PDF, a text document with
// citations) and search results go to an Anthropic backend as written,
// a PDF held at PDFPageTokens a page; a model without one refuses them
// by name before admission.
func TestAnthropicDocuments(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4}, withAnthropicBackend, func(c *envConfig) {
		c.models[0].ContextWindow, c.models[1].ContextWindow = 200_000, 200_000
	})
	pdf := base64.StdEncoding.EncodeToString([]byte("%PDF-1.4\n1 0 obj << /Type /Pages /Kids [2 0 R 3 0 R] >>\n2 0 obj << /Type /Page >>\n3 0 obj << /Type/Page >>\n%%EOF"))
	docs := `[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"` + pdf + `"},"title":"Two pages","cache_control":{"type":"ephemeral"}},` +
		`{"type":"document","source":{"type":"text","media_type":"text/plain","data":"The grass is green."},"citations":{"enabled":true}},` +
		`{"type":"search_result","source":"https://example.com","title":"Sky","content":[{"type":"text","text":"The sky is blue."}]},` +
		`{"type":"text","text":"What colour is the grass?"}]`
	body := `{"model":"hermes","max_tokens":30,"messages":[{"role":"user","content":` + docs + `}]}`
	resp, raw := e.do(t, "POST", "/v1/messages", keyAll, body)
	if resp.StatusCode != 200 || !strings.Contains(string(raw), `"type":"message"`) {
		t.Fatalf("documents to an Anthropic backend: %d %s", resp.StatusCode, raw)
	}
	recs := e.sim.Requests()
	if sent := string(recs[len(recs)-1].Body); !strings.Contains(sent, `"content":`+docs) {
		t.Errorf("the backend got %s", sent)
	}
	// count_tokens holds the two pages beside the bytes.
	_, counted := e.do(t, "POST", "/v1/messages/count_tokens", keyAll, strings.Replace(body, `"max_tokens":30,`, "", 1))
	var n struct {
		InputTokens int `json:"input_tokens"`
	}
	if json.Unmarshal(counted, &n); n.InputTokens < 2*anthropic.PDFPageTokens || n.InputTokens >= 3*anthropic.PDFPageTokens {
		t.Errorf("count_tokens %s: want two pages of %d (not the /Pages tree) and the text", counted, anthropic.PDFPageTokens)
	}
	before := e.sim.Stats().Requests
	resp, raw = e.do(t, "POST", "/v1/messages", keyAll, strings.Replace(body, `"hermes"`, `"charon"`, 1))
	if resp.StatusCode != 400 || !strings.Contains(string(raw), "document blocks are served only by Anthropic backends") || e.sim.Stats().Requests != before {
		t.Errorf("a document to a model without an Anthropic backend: %d %s", resp.StatusCode, raw)
	}
}
