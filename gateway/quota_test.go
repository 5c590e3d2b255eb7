package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

const hi = `{"model":"hermes","messages":[{"role":"user","content":"hi"}]`

// hiPrompt is the gateway's estimate of hi's prompt: its message's 30
// ASCII bytes at four a token.
const hiPrompt = 8

// peek reads a key's allowances from the store the gateway uses.
func peek(t *testing.T, q *quota.Limiter, key string, lim quota.Limits) quota.Decision {
	t.Helper()
	d, err := q.Peek(context.Background(), quota.One(key, lim))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rateLimitBody checks a 429's code and type and returns its message and
// retryAfter (nil when absent).
func rateLimitBody(t *testing.T, resp *http.Response) (msg string, retryAfter *int64) {
	t.Helper()
	var b struct {
		Error struct {
			Code, Message, Type string
		} `json:"error"`
		RetryAfter *int64 `json:"retryAfter"`
	}
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &b); err != nil {
		t.Fatalf("429 body: %v: %s", err, raw)
	}
	if b.Error.Code != "rate_limit" || b.Error.Type != "rate_limit_exceeded" {
		t.Errorf("429 code/type = %q/%q", b.Error.Code, b.Error.Type)
	}
	return b.Error.Message, b.RetryAfter
}

func TestRequestsPerMinute(t *testing.T) {
	lim := quota.Limits{RPM: 2, TPM: 100000}
	e := newEnv(t, sim.Config{ReplyTokens: 3}, withQuota(redisLimiter(t)), withLimits(keyAll, lim))
	for i, route := range []string{"/v1/chat", "/v1/chat/stream"} {
		resp := e.post(t, route, keyAll, hi+`}`)
		io.Copy(io.Discard, resp.Body)
		h := resp.Header
		if resp.StatusCode != 200 || h.Get("X-Ratelimit-Limit-Requests") != "2" ||
			h.Get("X-Ratelimit-Remaining-Requests") != strconv.Itoa(1-i) || h.Get("X-Ratelimit-Limit") != "2" ||
			h.Get("X-Ratelimit-Remaining") != strconv.Itoa(1-i) || h.Get("X-Ratelimit-Limit-Tokens") != "100000" {
			t.Fatalf("%s: status %d, headers %v", route, resp.StatusCode, h)
		}
		if _, err := time.ParseDuration(h.Get("X-Ratelimit-Reset-Requests")); err != nil {
			t.Errorf("x-ratelimit-reset-requests %q: %v", h.Get("X-Ratelimit-Reset-Requests"), err)
		}
		reset, _ := strconv.ParseInt(h.Get("X-Ratelimit-Reset"), 10, 64)
		if now := time.Now().Unix(); reset < now || reset > now+61 {
			t.Errorf("X-RateLimit-Reset = %d, now %d", reset, now)
		}
	}
	resp := e.post(t, "/v1/chat/completions", keyAll, hi+`}`)
	if resp.StatusCode != 429 {
		t.Fatalf("third request: %d", resp.StatusCode)
	}
	msg, retryAfter := rateLimitBody(t, resp)
	if want := "Rate limit reached for hermes on requests per min (RPM): Limit 2, Used 2, Requested 1. Please try again in "; !strings.HasPrefix(msg, want) {
		t.Errorf("message %q, want it to start %q", msg, want)
	}
	// GCRA: one request comes back every 30 s.
	ms, _ := strconv.ParseInt(resp.Header.Get("Retry-After-Ms"), 10, 64)
	if resp.Header.Get("Retry-After") != "30" || ms <= 29000 || ms > 30000 || retryAfter == nil || *retryAfter != 30 {
		t.Errorf("Retry-After %q, retry-after-ms %q, retryAfter %v", resp.Header.Get("Retry-After"), resp.Header.Get("Retry-After-Ms"), retryAfter)
	}
	if resp.Header.Get("X-Should-Retry") != "" || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "0" {
		t.Errorf("headers of a 429 that waiting cures: %v", resp.Header)
	}
	if got := e.sim.Stats().Requests; got != 2 {
		t.Errorf("the backend saw %d requests, want 2: a refused one must not reach it", got)
	}
}

// TestSettlement: the reservation (prompt estimate + max_tokens) is
// replaced by the backend's usage, so a key's tokens go back for use.
func TestSettlement(t *testing.T) {
	q := redisLimiter(t)
	lim := quota.Limits{RPM: 100, TPM: 1000, TPD: 100000}
	e := newEnv(t, sim.Config{ReplyTokens: 5}, withQuota(q), withLimits(keyAll, lim))
	body := hi + `,"max_tokens":900}`
	for i, route := range []string{"/v1/chat", "/v1/chat/stream", "/v1/chat/completions"} {
		resp := e.post(t, route, keyAll, body)
		io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d", route, resp.StatusCode)
		}
		// Reserved ~901, used 4 + 5 = 9 per request (the simulator's
		// count): without settlement the second request would be refused.
		want := int64(9 * (i + 1))
		poll.Until(t, "settlement", func() bool { return peek(t, q, "key_all", lim).DailyUsed == want })
		// TPM in use is the same count, less what the rolling minute has
		// refilled since (1000/min: under 17 tokens in the first second).
		if d := peek(t, q, "key_all", lim); d.TokensUsed > want || d.TokensUsed < want-16 {
			t.Errorf("after %s: TPM in use %d, want %d less at most a second's refill", route, d.TokensUsed, want)
		}
	}
	// A backend that fails before any token: the whole estimate comes back;
	// the request still counts against RPM.
	e.sim.SetConfig(sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: 500}})
	before := peek(t, q, "key_all", lim)
	resp := e.post(t, "/v1/chat", keyAll, body)
	if resp.StatusCode != 502 {
		t.Fatalf("failing backend: %d", resp.StatusCode)
	}
	poll.Until(t, "refund", func() bool { return peek(t, q, "key_all", lim).DailyUsed == before.DailyUsed })
	if d := peek(t, q, "key_all", lim); d.RequestsRemaining != before.RequestsRemaining-1 {
		t.Errorf("requests remaining %d, want %d", d.RequestsRemaining, before.RequestsRemaining-1)
	}
}

// TestAbandonedStreamSettles: a client that leaves mid-stream is charged
// what the backend generated until it was cancelled, not the estimate.
func TestAbandonedStreamSettles(t *testing.T) {
	q := redisLimiter(t)
	lim := quota.Limits{TPM: 100000, TPD: 100000}
	e := newEnv(t, sim.Config{ReplyTokens: 1000, TokensPerSecond: 200}, withQuota(q), withLimits(keyAll, lim))
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`,"max_tokens":2000}`)
	sc := bufio.NewScanner(resp.Body)
	for seen := 0; seen < 20 && sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "data: ") {
			seen++
		}
	}
	resp.Body.Close()
	poll.Until(t, "the backend to be cancelled", func() bool { return e.sim.Stats().Cancelled == 1 })
	poll.Until(t, "settlement", func() bool { d := peek(t, q, "key_all", lim); return d.DailyUsed < 2000 })
	// At least the 20 tokens the client read, far less than the 2001 reserved.
	if d := peek(t, q, "key_all", lim); d.DailyUsed < 20 || d.DailyUsed > 1000 {
		t.Errorf("charged %d tokens for an abandoned stream", d.DailyUsed)
	}
}

func TestTokensPerMinute(t *testing.T) {
	lim := quota.Limits{RPM: 100, TPM: 1000}
	e := newEnv(t, sim.Config{ReplyTokens: 5}, withQuota(redisLimiter(t)), withLimits(keyAll, lim))
	// Larger than the whole allowance: waiting cannot help.
	resp := e.post(t, "/v1/chat", keyAll, hi+`,"max_tokens":1200}`)
	if resp.StatusCode != 429 {
		t.Fatalf("request over TPM: %d", resp.StatusCode)
	}
	msg, retryAfter := rateLimitBody(t, resp)
	if want := "Request too large for hermes on tokens per min (TPM): Limit 1000, Requested 1208."; !strings.HasPrefix(msg, want) {
		t.Errorf("message %q, want it to start %q", msg, want)
	}
	if resp.Header.Get("X-Should-Retry") != "false" || resp.Header.Get("Retry-After") != "" || retryAfter != nil {
		t.Errorf("hopeless 429: x-should-retry %q, Retry-After %q, retryAfter %v",
			resp.Header.Get("X-Should-Retry"), resp.Header.Get("Retry-After"), retryAfter)
	}
	// Two reservations of 608 do not fit in 1000 at once.
	e.sim.SetConfig(sim.Config{ReplyTokens: 1, FirstTokenDelay: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", e.gw.URL+"/v1/chat", strings.NewReader(hi+`,"max_tokens":600}`))
	req.Header.Set("Authorization", "Bearer "+keyAll)
	go http.DefaultClient.Do(req) // held open by the backend
	poll.Until(t, "the first request at the backend", func() bool { return e.sim.Stats().Requests == 1 })
	resp = e.post(t, "/v1/chat", keyAll, hi+`,"max_tokens":600}`)
	if resp.StatusCode != 429 {
		t.Fatalf("second reservation: %d", resp.StatusCode)
	}
	msg, retryAfter = rateLimitBody(t, resp)
	if want := "Rate limit reached for hermes on tokens per min (TPM): Limit 1000, Used 608, Requested 608. Please try again in "; !strings.HasPrefix(msg, want) {
		t.Errorf("message %q, want it to start %q", msg, want)
	}
	// 216 tokens short at 1000/min: about 13 s.
	if ra := resp.Header.Get("Retry-After"); ra != "13" || retryAfter == nil || *retryAfter != 13 || resp.Header.Get("X-Should-Retry") != "" {
		t.Errorf("Retry-After %q, retryAfter %v, x-should-retry %q", ra, retryAfter, resp.Header.Get("X-Should-Retry"))
	}
}

func TestTokensPerDay(t *testing.T) {
	lim := quota.Limits{TPD: 1000}
	q := redisLimiter(t)
	e := newEnv(t, sim.Config{ReplyTokens: 5}, withQuota(q), withLimits(keyAll, lim))
	resp := e.post(t, "/v1/chat", keyAll, hi+`,"max_tokens":500}`)
	if resp.StatusCode != 200 {
		t.Fatalf("first: %d", resp.StatusCode)
	}
	io.Copy(io.Discard, resp.Body)
	// Settled in the background, a moment after the answer.
	poll.Until(t, "settlement", func() bool { return peek(t, q, "key_all", lim).DailyUsed == 9 })
	resp = e.post(t, "/v1/chat", keyAll, hi+`,"max_tokens":988}`) // 9 used + 996 > 1000
	if resp.StatusCode != 429 {
		t.Fatalf("over TPD: %d", resp.StatusCode)
	}
	msg, retryAfter := rateLimitBody(t, resp)
	if want := "Rate limit reached for hermes on tokens per day (TPD): Limit 1000, Used 9, Requested 996. Please try again in "; !strings.HasPrefix(msg, want) {
		t.Errorf("message %q, want it to start %q", msg, want)
	}
	now := time.Now().UTC()
	midnight := time.Date(now.Year(), now.Month(), now.Day()+1, 0, 0, 0, 0, time.UTC)
	ra, _ := strconv.ParseInt(resp.Header.Get("Retry-After"), 10, 64)
	if left := int64(midnight.Sub(now).Seconds()); ra < left-5 || ra > left+5 || retryAfter == nil || *retryAfter != ra {
		t.Errorf("Retry-After %d, retryAfter %v; want the %d s to midnight UTC", ra, retryAfter, left)
	}
	if resp.Header.Get("X-Should-Retry") != "false" {
		t.Errorf("a spent day must say x-should-retry: false")
	}
}

// TestHeadersWithoutAdmission: authenticated answers that reserve nothing
// (a model list, a malformed request) carry the headers and consume nothing.
func TestHeadersWithoutAdmission(t *testing.T) {
	lim := quota.Limits{RPM: 5, TPM: 1000}
	e := newEnv(t, sim.Config{}, withQuota(redisLimiter(t)), withLimits(keyAll, lim))
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("GET", e.gw.URL+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+keyAll)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.Header.Get("X-Ratelimit-Remaining-Requests") != "5" || resp.Header.Get("X-Ratelimit-Remaining-Tokens") != "1000" {
			t.Fatalf("GET /v1/models: %v", resp.Header)
		}
	}
	resp := e.post(t, "/v1/chat", keyAll, `{"model":"hermes"}`)
	if resp.StatusCode != 400 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "5" {
		t.Fatalf("bad request: %d %v", resp.StatusCode, resp.Header)
	}
	resp = e.post(t, "/v1/chat", "sk-unknown", hi+`}`)
	if resp.StatusCode != 401 || resp.Header.Get("X-Ratelimit-Limit-Requests") != "" {
		t.Fatalf("unauthenticated: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestStoreDown: with the store unreachable, fail closed answers 503
// overloaded (never 500, never a hang); fail open serves under local
// limits; both recover when Redis returns.
func TestStoreDown(t *testing.T) {
	for _, mode := range []quota.FailMode{quota.FailClosed, quota.FailOpen} {
		srv := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
		t.Cleanup(func() { rdb.Close() })
		q := quota.NewLimiter(quota.NewRedis(rdb, "obol:"), quota.Options{Mode: mode, ProbeInterval: 20 * time.Millisecond})
		t.Cleanup(q.Close)
		lim := quota.Limits{RPM: 4}
		e := newEnv(t, sim.Config{ReplyTokens: 2}, withQuota(q), withLimits(keyAll, lim))
		srv.Stop()
		var codes []int
		for i := 0; i < 3; i++ {
			resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
			io.Copy(io.Discard, resp.Body)
			codes = append(codes, resp.StatusCode)
			if mode == quota.FailClosed && (resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "") {
				t.Errorf("fail closed, store down: %d %v", resp.StatusCode, resp.Header)
			}
		}
		if mode == quota.FailOpen && (codes[0] != 200 || codes[1] != 200 || codes[2] != 200) {
			t.Errorf("fail open, store down: %v", codes)
		}
		srv.Restart()
		poll.Until(t, "the store to be used again", func() bool { return q.Ping(context.Background()) == nil })
		resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
		if resp.StatusCode != 200 || resp.Header.Get("X-Ratelimit-Remaining-Requests") != "3" {
			t.Errorf("mode %d, after recovery: %d %v", mode, resp.StatusCode, resp.Header)
		}
	}
}

// TestReadyzReportsStore: /readyz names the shared store when it does not
// answer: still ready (200, degraded) when the replica admits without it
// (fail_mode open), not ready (503) when it cannot (closed); and ready
// again once it answers.
func TestReadyzReportsStore(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	q := quota.NewLimiter(quota.NewRedis(rdb, "obol:"), quota.Options{ProbeInterval: 20 * time.Millisecond})
	t.Cleanup(q.Close)
	e := newEnv(t, sim.Config{}, withLimiter(q))
	closed := newEnv(t, sim.Config{}, withLimiter(q), func(c *envConfig) { c.Dependencies[0].Required = true })
	ready := func(e *env) (int, string, string) {
		resp, err := http.Get(e.gw.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var rep struct {
			Status string
			Checks map[string]string
		}
		json.NewDecoder(resp.Body).Decode(&rep)
		return resp.StatusCode, rep.Status, rep.Checks["redis"]
	}
	if code, status, store := ready(e); code != 200 || status != "ready" || store != "ok" {
		t.Fatalf("store up: %d %s, store %q", code, status, store)
	}
	srv.Stop()
	// Readiness is cached for a second; wait for a fresh report.
	poll.Until(t, "readyz to report the store, degraded", func() bool {
		code, status, store := ready(e)
		return code == 200 && status == "degraded" && strings.HasPrefix(store, "unreachable: admitting")
	})
	if status, _ := e.send(t, "/v1/chat", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`); status != 200 {
		t.Errorf("a request while degraded: %d", status)
	}
	poll.Until(t, "readyz fail-closed to be not ready", func() bool { code, status, _ := ready(closed); return code == 503 && status == "not_ready" })
	srv.Restart()
	poll.Until(t, "readyz to recover", func() bool { code, _, store := ready(e); return code == 200 && store == "ok" })
}

// TestConcurrencyCap: a key capped at 3 requests in flight, 30 parallel
// streams: never more than 3 reach the backend at once, the rest are
// refused with 429 and Retry-After: 1; then 30 more of which every
// admitted one is abandoned mid-stream: every lease is free afterwards.
// (An abandoned stream's generation runs on at the backend for a moment
// after the gateway let its lease go, which nothing the gateway does can
// order, so the backend's count is checked on streams read to the end.)
func TestConcurrencyCap(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[shared], func(t *testing.T) {
			opts := []envOption{withLimits(keyAll, quota.Limits{Concurrency: 3})}
			if shared {
				opts = append(opts, withLimiter(redisLimiter(t)))
			}
			e := newEnv(t, sim.Config{ReplyTokens: 20, TokensPerSecond: 100}, opts...)
			codes := capStreams(t, e, false)
			if got := e.sim.Stats().MaxInFlight; got > 3 || codes[200] < 3 || codes[200]+codes[429] != 30 {
				t.Errorf("max in flight at the backend %d, answers %v", got, codes)
			}
			// A lease is released as its stream is settled, just after its
			// last byte (with Redis, in the next batch): wait for them.
			released := func() bool {
				d, err := e.quota.Peek(context.Background(), quota.One("key_all", quota.Limits{Concurrency: 3}))
				return err == nil && d.InFlight == 0
			}
			poll.Until(t, "the finished streams' leases to be released", released)
			if codes := capStreams(t, e, true); codes[200] < 3 {
				t.Errorf("abandoned streams: answers %v", codes)
			}
			// Every lease is released: three at once get in again.
			poll.Until(t, "the leases to be released", released)
		})
	}
}

// capStreams sends 30 streams at once for keyAll, reading each admitted
// one to its end or (abandon) leaving after its first bytes, and returns
// the answers' statuses.
func capStreams(t *testing.T, e *env, abandon bool) map[int]int {
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "POST", e.gw.URL+"/v1/chat/stream", strings.NewReader(hi+`}`))
			req.Header.Set("Authorization", "Bearer "+keyAll)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			defer resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
			if resp.StatusCode == 429 {
				b, _ := io.ReadAll(resp.Body)
				if resp.Header.Get("Retry-After") != "1" || !strings.Contains(string(b), "too many concurrent requests") {
					t.Errorf("a 429 with Retry-After %q: %s", resp.Header.Get("Retry-After"), b)
				}
				return
			}
			if abandon {
				resp.Body.Read(make([]byte, 64))
				return // cancel: the client leaves mid-stream
			}
			io.Copy(io.Discard, resp.Body)
		}()
	}
	wg.Wait()
	return codes
}

// TestProjectLimit: a project with two keys and RPM 20 admits exactly 20
// of 60 concurrent requests split across both keys, refuses the rest
// naming the project, and GET /v1/key shows the project's allowance.
func TestProjectLimit(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "redis"}[shared], func(t *testing.T) {
			opts := []envOption{withProject("acme", quota.Limits{RPM: 20}, keyAll, keyHermes)}
			if shared {
				opts = append(opts, withLimiter(redisLimiter(t)))
			}
			e := newEnv(t, sim.Config{ReplyTokens: 3}, opts...)
			var wg sync.WaitGroup
			var mu sync.Mutex
			codes := map[int]int{}
			for i := 0; i < 60; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp := e.post(t, "/v1/chat", []string{keyAll, keyHermes}[i%2], hi+`}`)
					b, _ := io.ReadAll(resp.Body)
					mu.Lock()
					codes[resp.StatusCode]++
					mu.Unlock()
					if resp.StatusCode == 429 && !strings.Contains(string(b), `"message":"project acme: Rate limit reached for hermes on requests per min (RPM): Limit 20`) {
						t.Errorf("a refusal: %s", b)
					}
				}()
			}
			wg.Wait()
			if codes[200] != 20 || codes[429] != 40 {
				t.Errorf("answers %v, want 20 admitted", codes)
			}
			resp := e.get(t, "/v1/key", keyHermes)
			var k struct {
				Project struct {
					ID        string
					Limits    struct{ RPM *int64 }
					Remaining struct{ Requests *int64 }
				}
			}
			json.NewDecoder(resp.Body).Decode(&k)
			if k.Project.ID != "acme" || k.Project.Limits.RPM == nil || *k.Project.Limits.RPM != 20 ||
				k.Project.Remaining.Requests == nil || *k.Project.Remaining.Requests != 0 {
				t.Errorf("GET /v1/key: %+v", k.Project)
			}
		})
	}
}
