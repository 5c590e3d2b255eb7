package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/syncbuf"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// get sends a GET with the key (none when key is "").
func (e *env) get(t *testing.T, path, key string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.gw.URL+path, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// usageOf reads GET /v1/usage for the key.
func (e *env) usageOf(t *testing.T, key, query string) usage.Summary {
	t.Helper()
	resp := e.get(t, "/v1/usage"+query, key)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/usage%s: %d %s", query, resp.StatusCode, readError(t, resp).Error.Message)
	}
	var s usage.Summary
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func requests(s usage.Summary) (n int64) {
	for _, r := range s.ByModel {
		n += r.Requests
	}
	return n
}

// waitRecorded waits until the key's month counts n requests: the
// client has its answer a moment before the ledger has the record.
func (e *env) waitRecorded(t *testing.T, key string, n int64) usage.Summary {
	t.Helper()
	var s usage.Summary
	poll.Until(t, fmt.Sprintf("%d requests in the ledger", n), func() bool {
		s = e.usageOf(t, key, "")
		return requests(s) >= n
	})
	if requests(s) != n {
		t.Fatalf("ledger counts %d requests, want %d", requests(s), n)
	}
	return s
}

// send posts body and reads the whole answer.
func (e *env) send(t *testing.T, path, body string) (status int, id string) {
	resp := e.post(t, path, keyAll, body)
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("X-Request-Id")
}

func TestUsageEndpoint(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 5})
	month := time.Now().UTC().Format("2006-01")
	if s := e.usageOf(t, keyAll, ""); s.Period != month || s.TotalTokens != 0 || len(s.ByModel) != 0 {
		t.Errorf("before any request: %+v", s)
	}
	for _, r := range []struct{ path, body string }{
		{"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"one two three"}]}`},
		{"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"one two"}]}`},
		{"/v1/chat/completions", `{"model":"hermes","messages":[{"role":"user","content":"one"}]}`},
		{"/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"x"}],"max_tokens":3}`},
		{"/api/v1/chat/completions", `{"model":"charon","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"y"}]}`},
	} {
		if status, _ := e.send(t, r.path, r.body); status != 200 {
			t.Fatalf("%s: %d", r.path, status)
		}
	}
	s := e.waitRecorded(t, keyAll, 5)
	// Every token as the backend reported it: 6 + 5 + 4 + 4 + 4 prompt
	// tokens (words + 3 per message), 5 + 5 + 5 + 3 + 5 completion.
	st := e.sim.Stats()
	want := usage.Summary{Period: month, TotalTokens: st.ReportedPrompt + st.ReportedTokens, Currency: "usd", ByModel: map[string]usage.Row{
		"hermes": {Prompt: 6 + 5 + 4 + 4, Completion: 5 + 5 + 5 + 3, Requests: 4},
		"charon": {Prompt: 4, Completion: 5, Requests: 1},
	}}
	if fmt.Sprint(s) != fmt.Sprint(want) || st.ReportedPrompt != 23 || st.ReportedTokens != 23 {
		t.Errorf("usage %+v\nwant %+v (backend reported %d + %d)", s, want, st.ReportedPrompt, st.ReportedTokens)
	}
	// The same under /api/v1, and another key sees only its own month.
	if s2 := e.usageOf(t, keyAll, "?period="+month); fmt.Sprint(s2) != fmt.Sprint(s) {
		t.Errorf("?period=%s: %+v", month, s2)
	}
	if s3 := e.usageOf(t, keyHermes, ""); s3.TotalTokens != 0 {
		t.Errorf("another key's usage: %+v", s3)
	}
	resp := e.get(t, "/api/v1/usage?period=2020-01", keyAll)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || string(b) != `{"period":"2020-01","total_tokens":0,"total_cost":0,"currency":"usd","by_model":{}}` {
		t.Errorf("an empty month: %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("headers %v", resp.Header)
	}

	for _, q := range []string{"?period=2026-13", "?period=", "?period=2026-1", "?period=april", "?period=2026-04-01"} {
		resp := e.get(t, "/v1/usage"+q, keyAll)
		if resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 400", q, resp.StatusCode)
			continue
		}
		if e := readError(t, resp).Error; e.Code != "bad_request" || e.Param == nil || *e.Param != "period" || !strings.Contains(e.Message, "YYYY-MM") {
			t.Errorf("%s: %+v", q, e)
		}
	}
	if resp := e.get(t, "/v1/usage", ""); resp.StatusCode != 401 {
		t.Errorf("no key: %d", resp.StatusCode)
	}
	if resp := e.post(t, "/v1/usage", keyAll, "{}"); resp.StatusCode != 405 {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// TestRequestIDTraces: the id a client gets in X-Request-Id is the
// response's id, every stream chunk's id, and the access log's
// request_id, so that a disputed charge can be followed.
func TestRequestIDTraces(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	l := usage.NewLedger(usage.NewPostgres(pool, 35), usage.Options{})
	t.Cleanup(func() { l.Close(context.Background()) })
	e := newEnv(t, sim.Config{ReplyTokens: 3}, withLedger(l))
	resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
	var body struct{ ID string }
	json.NewDecoder(resp.Body).Decode(&body)
	id := resp.Header.Get("X-Request-Id")
	if id == "" || body.ID != id || !strings.HasPrefix(id, "chat_") {
		t.Errorf("X-Request-Id %q, response id %q", id, body.ID)
	}
	resp = e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	sid := resp.Header.Get("X-Request-Id")
	events, _ := readEvents(t, resp.Body)
	for _, ev := range events {
		if !ev.done && ev.m["id"] != sid {
			t.Errorf("chunk id %v, X-Request-Id %q", ev.m["id"], sid)
		}
	}
	for _, id := range []string{id, sid} {
		poll.Until(t, "the access log line of "+id, func() bool { return strings.Contains(e.log.String(), `"request_id":"`+id+`"`) })
		// The ledger remembers the request by the same id.
		poll.Until(t, "the ledger's record of "+id, func() bool {
			var n int
			pool.QueryRow(context.Background(), "SELECT count(*) FROM request_log WHERE request_id = $1", id).Scan(&n)
			return n == 1
		})
	}
}

// accessLine is the part of an access log line the ledger is checked
// against.
type accessLine struct {
	Msg              string `json:"msg"`
	RequestID        string `json:"request_id"`
	Path             string `json:"path"`
	Status           int    `json:"status"`
	PromptTokens     *int64 `json:"prompt_tokens"`
	CompletionTokens int64  `json:"completion_tokens"`
	Counted          bool   `json:"usage_counted"`
	Backend          string `json:"backend"`
	Outcome          string `json:"stream_outcome"`
}

func accessLog(t *testing.T, e *env) map[string]accessLine {
	t.Helper()
	out := map[string]accessLine{}
	sc := bufio.NewScanner(strings.NewReader(e.log.String()))
	for sc.Scan() {
		var l accessLine
		if json.Unmarshal(sc.Bytes(), &l) == nil && l.Msg == "request" && strings.Contains(l.Path, "/chat") {
			out[l.RequestID] = l
		}
	}
	return out
}

// tally is a running total of tokens and money.
type tally struct {
	prompt, completion, requests int64
	cost                         money.Money
}

func ledgerTally(s usage.Summary) tally {
	t := tally{cost: s.TotalCost}
	for _, r := range s.ByModel {
		t.prompt += r.Prompt
		t.completion += r.Completion
		t.requests += r.Requests
	}
	return t
}

// checkCost: the summary's cost is the price table (hermesPrice; other
// models unpriced) applied to its token categories.
func checkCost(t *testing.T, s usage.Summary) {
	t.Helper()
	h := s.ByModel["hermes"]
	want := hermesPrice.Cost(money.Tokens{Prompt: h.Prompt, Cached: h.CachedPrompt, Completion: h.Completion})
	if s.TotalCost != want || h.Cost != want {
		t.Errorf("cost %s (hermes %s), want the prices applied to %+v: %s", s.TotalCost.USD(), h.Cost.USD(), h, want.USD())
	}
}

// TestLedgerMatchesBackend drives a mix of requests through the gateway,
// phase by phase, and checks the ledger against the tokens the backend
// itself reported, token for token, and, where the backend could report
// nothing (a stream cut short), against what the client was sent; on
// every store, and at every phase the cost is the price table applied to
// those tokens (cached prompt tokens at the cached price); and behind an
// Anthropic backend, every shape its usage takes (ledgerMatchesAnthropic).
func TestLedgerMatchesBackend(t *testing.T) {
	for _, store := range []string{"embedded", "postgres"} {
		t.Run("anthropic backend, "+store, func(t *testing.T) { ledgerMatchesAnthropic(t, store) })
		t.Run(store, func(t *testing.T) {
			opts := []envOption{withPrices(money.Prices{hermesPrice})}
			if store == "postgres" {
				opts = append(opts, withLedger(postgresLedger(t)))
			}
			e := newEnv(t, sim.Config{ReplyTokens: 9, CachedTokens: 1}, opts...)
			e.sim.Record(false)
			var (
				recorded int64
				last     tally
				lastSim  sim.Stats
			)
			// phase waits for n more records and returns what the ledger
			// and the backend added since the last phase.
			phase := func(n int64) (tally, sim.Stats) {
				t.Helper()
				recorded += n
				s := e.waitRecorded(t, keyAll, recorded)
				cur := ledgerTally(s)
				checkCost(t, s)
				st := e.sim.Stats()
				d := tally{cur.prompt - last.prompt, cur.completion - last.completion, cur.requests - last.requests, cur.cost - last.cost}
				ds := sim.Stats{ReportedPrompt: st.ReportedPrompt - lastSim.ReportedPrompt, ReportedTokens: st.ReportedTokens - lastSim.ReportedTokens,
					CompletionTokens: st.CompletionTokens - lastSim.CompletionTokens, Completed: st.Completed - lastSim.Completed}
				if d.prompt+d.completion > 0 && d.cost <= 0 {
					t.Errorf("tokens charged nothing: %+v", d)
				}
				last, lastSim = cur, st
				return d, ds
			}

			// 1. Completed requests of every shape, concurrently: the
			// backend reported each one's usage.
			routes := []struct{ path, body string }{
				{"/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"%s"}],"max_tokens":%d}`},
				{"/v1/chat/stream", `{"model":"hermes","messages":[{"role":"user","content":"%s"}],"max_tokens":%d}`},
				{"/v1/chat/completions", `{"model":"hermes","messages":[{"role":"user","content":"%s"}],"max_tokens":%d}`},
				{"/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"%s"}],"max_tokens":%d}`},
				{"/v1/chat/completions", `{"model":"charon","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"%s"}],"max_tokens":%d}`},
			}
			var wg sync.WaitGroup
			for i := 0; i < 40; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := routes[i%len(routes)]
					words := strings.Repeat("word ", i%11+1)
					if status, _ := e.send(t, r.path, fmt.Sprintf(r.body, words, i%9+1)); status != 200 {
						t.Errorf("%s: %d", r.path, status)
					}
				}()
			}
			wg.Wait()
			d, ds := phase(40)
			if d.prompt != ds.ReportedPrompt || d.completion != ds.ReportedTokens || ds.ReportedTokens == 0 {
				t.Errorf("completed: ledger %+v, backend reported %d + %d", d, ds.ReportedPrompt, ds.ReportedTokens)
			}

			// 2. Non-streaming clients that leave before the answer: the
			// backend finishes, reports, and the ledger takes its count.
			e.sim.SetConfig(sim.Config{ReplyTokens: 7, FirstTokenDelay: 200 * time.Millisecond})
			for i := 0; i < 4; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
				req, _ := http.NewRequestWithContext(ctx, "POST", e.gw.URL+"/v1/chat", strings.NewReader(hi+`}`))
				req.Header.Set("Authorization", "Bearer "+keyAll)
				if _, err := http.DefaultClient.Do(req); err == nil {
					t.Error("the client was answered before its timeout")
				}
				cancel()
			}
			d, ds = phase(4)
			if d.prompt != ds.ReportedPrompt || d.completion != 4*7 || ds.ReportedTokens != 4*7 || ds.Completed != 4 {
				t.Errorf("left before the answer: ledger %+v, backend %+v", d, ds)
			}

			// 3. Streams the client abandons after three tokens: charged
			// what was relayed, which is no more than the backend made,
			// and the gateway's estimate of the prompt ("hi": 1 token),
			// for the backend reports nothing of a stream cut short.
			e.sim.SetConfig(sim.Config{ReplyTokens: 200, TokensPerSecond: 400})
			before := e.sim.Stats()
			for i := 0; i < 4; i++ {
				resp := e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
				er := bufio.NewReader(resp.Body)
				for n := 0; n < 4; { // the role chunk, then three tokens
					line, err := er.ReadString('\n')
					if err != nil {
						t.Fatal(err)
					}
					if strings.HasPrefix(line, "data: ") {
						n++
					}
				}
				resp.Body.Close()
			}
			d, _ = phase(4)
			poll.Until(t, "the backend to see the streams end", func() bool { return e.sim.Stats().Cancelled >= 4 })
			generated := e.sim.Stats().CompletionTokens - before.CompletionTokens
			if d.completion < 4*3 || d.completion > generated || d.prompt != 4*hiPrompt {
				t.Errorf("abandoned: ledger %+v; client read 12 tokens, backend generated %d", d, generated)
			}

			// 4. Backends that fail mid-stream after four tokens: charged
			// the four, exactly.
			e.sim.SetConfig(sim.Config{ReplyTokens: 9, Fault: sim.Fault{Kind: sim.StreamError, After: 4}})
			for i := 0; i < 3; i++ {
				e.send(t, "/v1/chat/stream", hi+`}`)
			}
			if d, _ = phase(3); d.completion != 3*4 || d.prompt != 3*hiPrompt {
				t.Errorf("failed mid-stream: ledger %+v, want 12 completion tokens", d)
			}

			// 5. A tool call streamed in pieces, the client not asking for
			// usage: charged what the backend reported.
			e.sim.SetConfig(sim.Config{ReplyTokens: 3})
			for i := 0; i < 2; i++ {
				if status, _ := e.send(t, "/v1/chat/completions", `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"weather?"}]`+weatherTools+`}`); status != 200 {
					t.Errorf("tool call: %d", status)
				}
			}
			if d, ds = phase(2); d.completion != ds.ReportedTokens || d.completion != 2*int64(sim.ToolCallTokens()) {
				t.Errorf("tool calls: ledger %+v, backend reported %d", d, ds.ReportedTokens)
			}

			// 6. Backends that fail before any token: nothing to charge.
			e.sim.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
			for i := 0; i < 3; i++ {
				if status, _ := e.send(t, "/v1/chat", hi+`}`); status != 502 {
					t.Errorf("status %d, want 502", status)
				}
			}
			// 7. A duplicate write of every request id adds nothing.
			e.sim.SetConfig(sim.Config{ReplyTokens: 2})
			e.send(t, "/v1/chat", hi+`}`)
			d, _ = phase(1)
			if d.requests != 1 {
				t.Errorf("the failed requests were recorded: %+v", d)
			}
			// A handler logs a moment after its record is queued.
			var lines map[string]accessLine
			poll.Until(t, "54 access log lines with usage", func() bool {
				lines = accessLog(t, e)
				n := 0
				for _, l := range lines {
					if l.PromptTokens != nil {
						n++
					}
				}
				return n == 54
			})
			var dup []usage.Record
			for id, l := range lines {
				if l.PromptTokens != nil {
					dup = append(dup, usage.Record{RequestID: id, Key: "key_all", Model: "hermes", Time: time.Now(), PromptTokens: 1000})
				}
			}
			for _, r := range dup {
				<-e.ledger.Record(r)
			}

			// The ledger is the access log's sum, line for line.
			var fromLog tally
			for _, l := range lines {
				if l.PromptTokens != nil {
					fromLog.prompt += *l.PromptTokens
					fromLog.completion += l.CompletionTokens
					fromLog.requests++
				}
			}
			if got := ledgerTally(e.usageOf(t, keyAll, "")); got.prompt != fromLog.prompt || got.completion != fromLog.completion ||
				got.requests != 54 || got.cost != last.cost {
				t.Errorf("ledger %+v, access log %+v", got, fromLog)
			}
		})
	}
}

// TestLedgerRidesOutStoreRestart: PostgreSQL is killed in the middle of
// a load and started again; records made meanwhile are written once it is
// back, and the ledger matches the backend's reports exactly.
func TestLedgerRidesOutStoreRestart(t *testing.T) {
	srv := pgtest.Start(t)
	ledgerLog := &syncbuf.Buffer{}
	l := usage.NewLedger(usage.NewPostgres(srv.Migrated(t), 35), usage.Options{SpoolDir: t.TempDir(), Retry: 20 * time.Millisecond,
		Timeout: 500 * time.Millisecond, Log: slog.New(slog.NewJSONHandler(ledgerLog, nil))})
	defer l.Close(context.Background())
	e := newEnv(t, sim.Config{ReplyTokens: 6}, withLedger(l))
	e.sim.Record(false)

	var wg sync.WaitGroup
	load := func(n int) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				path := []string{"/v1/chat", "/v1/chat/stream"}[i%2]
				if status, _ := e.send(t, path, fmt.Sprintf(`{"model":"hermes","messages":[{"role":"user","content":"%s"}]}`, strings.Repeat("w ", i%5+1))); status != 200 {
					t.Errorf("%s: %d", path, status)
				}
			}()
		}
		wg.Wait()
	}
	load(20)
	srv.Stop()
	load(20)
	if resp := e.get(t, "/v1/usage", keyAll); resp.StatusCode != 503 || readError(t, resp).Error.Code != "overloaded" {
		t.Errorf("usage read with the store down: %d", resp.StatusCode)
	}
	// The ledger has tried, failed and kept the records before the store is back.
	poll.Until(t, "a record logged as delayed", func() bool {
		return strings.Contains(ledgerLog.String(), `"msg":"usage record delayed"`)
	})
	srv.Restart()
	load(20)
	s := e.waitRecorded(t, keyAll, 60)
	st := e.sim.Stats()
	if got := ledgerTally(s); got.prompt != st.ReportedPrompt || got.completion != st.ReportedTokens {
		t.Errorf("ledger %+v, backend reported %d + %d", got, st.ReportedPrompt, st.ReportedTokens)
	}
}

var _ gateway.Ledger = (*usage.Ledger)(nil)

// TestContinuousUsageChargesCutStreamsExactly: with a vLLM backend asked
// for usage in every chunk, a stream the client abandons is charged the
// backend's own count, prompt included, not the gateway's estimate.
func TestContinuousUsageChargesCutStreamsExactly(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 500, TokensPerSecond: 200}, func(c *envConfig) {
		c.models[0].Backends[0].ContinuousUsage = true
	})
	resp := e.post(t, "/v1/chat/completions", keyAll, `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}`)
	br := bufio.NewReader(resp.Body)
	for n := 0; n < 6; { // the role chunk and five tokens
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			if strings.Contains(line, `"prompt_tokens"`) {
				t.Errorf("a client that did not ask for usage got it: %s", line)
			}
			n++
		}
	}
	resp.Body.Close()
	poll.Until(t, "the backend to see the stream end", func() bool { return e.sim.Stats().Cancelled == 1 })
	s := e.waitRecorded(t, keyAll, 1)
	st := e.sim.Stats()
	got := s.ByModel["hermes"]
	// The backend's prompt count (6 words + 3) differs from the gateway's
	// estimate (29 characters / 4 = 8): the ledger has the backend's.
	if got.Prompt != 9 || st.PromptTokens != 9 || got.Completion < 5 || got.Completion > st.CompletionTokens {
		t.Errorf("ledger %+v; backend prompt %d, generated %d", got, st.PromptTokens, st.CompletionTokens)
	}
	if !strings.Contains(string(e.sim.Requests()[0].Body), `"continuous_usage_stats":true`) {
		t.Errorf("the backend was not asked for continuous usage: %s", e.sim.Requests()[0].Body)
	}
	poll.Until(t, "the access log line", func() bool { return strings.Contains(e.log.String(), `"usage_counted":false`) })
}

// TestCallingKey: GET /v1/key tells a key its tier, limits, what remains
// (the numbers of the rate-limit headers) and its spend this month (the
// figure /v1/usage shows), whatever its scopes.
func TestCallingKey(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3}, withLimits(keyAll, quota.Limits{RPM: 10, TPM: 10000, TPD: 50000, Concurrency: 4}),
		withPrices(money.Prices{hermesPrice}))
	if status, _ := e.send(t, "/v1/chat", hi+`}`); status != 200 {
		t.Fatal(status)
	}
	s := e.waitRecorded(t, keyAll, 1)
	resp := e.get(t, "/v1/key", keyAll)
	var k struct {
		ID, Tier  string
		Limits    struct{ RPM, TPM, TPD, Concurrency *int64 }
		Remaining struct {
			Requests    *int64 `json:"requests"`
			TokensToday *int64 `json:"tokens_today"`
		}
		Spend struct {
			Cost     json.Number `json:"cost"`
			Requests int64       `json:"requests"`
		}
	}
	d := json.NewDecoder(resp.Body)
	d.UseNumber()
	d.Decode(&k)
	if resp.StatusCode != 200 || k.ID != "key_all" || k.Tier != "pro" || *k.Limits.RPM != 10 || k.Limits.Concurrency == nil || *k.Limits.Concurrency != 4 || *k.Remaining.Requests != 9 ||
		resp.Header.Get("X-Ratelimit-Remaining-Requests") != "9" || *k.Remaining.TokensToday != 50000-(s.TotalTokens) ||
		usd(t, k.Spend.Cost.String()) != s.TotalCost || k.Spend.Requests != 1 {
		t.Errorf("GET /v1/key: %d %+v; usage %+v", resp.StatusCode, k, s)
	}
	if resp := e.get(t, "/v1/key", "sk-nope"); resp.StatusCode != 401 {
		t.Errorf("a bad key: %d", resp.StatusCode)
	}
}
