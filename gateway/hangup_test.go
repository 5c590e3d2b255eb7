package gateway_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redisbatch"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// fleetLimiter decides quotas in the shared test Redis as cmd/obol's
// replicas do (replicaLimiter), under a prefix of the test's own.
func fleetLimiter(t testing.TB, ledger quota.Ledger, mode quota.FailMode) (*quota.Limiter, *quota.Redis) {
	rdb, prefix := redistest.Shared(t)
	return replicaLimiterMode(t, rdb, prefix, ledger, mode)
}

// replicaLimiter is one replica's limiter over rdb as cmd/obol makes it:
// admissions sharing eager pipelines, settlements batched, budgets
// started from the ledger; failing closed.
func replicaLimiter(t testing.TB, rdb *redis.Client, prefix string, ledger quota.Ledger) *quota.Limiter {
	l, _ := replicaLimiterMode(t, rdb, prefix, ledger, quota.FailClosed)
	return l
}

func replicaLimiterMode(t testing.TB, rdb *redis.Client, prefix string, ledger quota.Ledger, mode quota.FailMode) (*quota.Limiter, *quota.Redis) {
	r := quota.NewRedis(rdb, prefix)
	r.SetPipelines(redisbatch.New(rdb, time.Millisecond, quota.DefaultTimeout))
	r.SetAdmissions(redisbatch.NewEager(rdb, 4, quota.DefaultTimeout))
	money := quota.Money{Ledger: ledger}
	r.SetMoney(money)
	l := quota.NewLimiter(r, quota.Options{Mode: mode, Money: money})
	t.Cleanup(l.Close)
	return l, r
}

// hangUpSubject is the key and project of TestHangUpsCostNothing, as
// the gateway resolves them.
var hangUpSubject = quota.Subject{
	Key: "key_all", Limits: quota.Limits{TPD: 1_000_000, Concurrency: 40, Budget: 1_000_000_000_000},
	Project: "acme", ProjectLimits: quota.Limits{Concurrency: 60, Budget: 2_000_000_000_000},
}

// TestHangUpsCostNothing: clients that hang up at once by the hundred —
// over HTTP/1.1 a POST and then the connection closed, over h2c the
// stream reset after its HEADERS and DATA — against a key and project
// with a day's tokens, concurrency caps and budgets, decided in Redis as
// replicas decide. No handler panics; once they are done nothing is held
// (no lease, no money), and the day's tokens and the month's spend are
// exactly what the ledger recorded of the requests that reached a
// backend.
func TestHangUpsCostNothing(t *testing.T) {
	ledger := embeddedLedger(t)
	lim, _ := fleetLimiter(t, ledger, quota.FailClosed)
	sub := hangUpSubject
	budget := money.Money(sub.Limits.Budget)
	e := newEnv(t, sim.Config{ReplyTokens: 30, TokensPerSecond: 600}, withLedger(ledger), withLimiter(lim),
		withPrices(money.Prices{hermesPrice}), withLimits(keyAll, sub.Limits),
		withProject("acme", sub.ProjectLimits, keyAll), func(c *envConfig) {
			c.h2c = true
			k := c.keys[keyAll]
			k.Budget = &keys.Budget{Monthly: budget}
			c.keys[keyAll] = k
		})
	addr := strings.TrimPrefix(e.gw.URL, "http://")
	bodies := []struct{ path, body string }{
		{"/v1/chat", small},
		{"/v1/chat/stream", small},
		{"/v1/chat/completions", `{"model":"hermes","stream":true,"max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`},
		{"/v1/responses", `{"model":"hermes","input":"hi","max_output_tokens":20}`},
	}
	h2 := &http.Client{Transport: &http.Transport{Protocols: h2cOnly()}}
	var wg sync.WaitGroup
	for i := range 600 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b := bodies[i%len(bodies)]
			// Gone at once, or after up to 40 ms: while authenticated,
			// admitted, at the backend or streaming.
			after := time.Duration(rand.IntN(40_000)) * time.Microsecond
			if i%4 == 0 {
				after = 0
			}
			if i%2 == 0 {
				hangUpHTTP1(addr, b.path, b.body, after)
				return
			}
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(after, cancel)
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.gw.URL+b.path, strings.NewReader(b.body))
			req.Header.Set("Authorization", "Bearer "+keyAll)
			if resp, err := h2.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.srv.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(e.serverLog.String(), "panic") {
		t.Fatalf("a handler panicked:\n%.3000s", e.serverLog.String())
	}
	for _, line := range strings.Split(e.log.String(), "\n") {
		if strings.Contains(line, `"status":400`) || strings.Contains(line, `"status":500`) {
			t.Errorf("a client that hung up answered as a bad request or a bug: %s", line)
		}
	}
	period := time.Now().UTC().Format("2006-01")
	var d quota.Decision
	var s *usage.Summary
	settled := poll.Try(func() bool {
		var err error
		if d, err = lim.Peek(context.Background(), sub); err != nil {
			t.Fatal(err)
		}
		if s, err = ledger.Summary(context.Background(), "key_all", period); err != nil {
			t.Fatal(err)
		}
		return d.InFlight == 0 && d.Project.InFlight == 0 && d.Held == 0 && d.Project.Held == 0 &&
			d.DailyUsed == s.TotalTokens && int64(s.TotalCost) == d.Spent
	})
	if !settled {
		t.Fatalf("after the hang-ups: %d and %d leases in flight, $%s and $%s held, %d tokens today and $%s spent; the ledger: %d tokens, $%s",
			d.InFlight, d.Project.InFlight, money.Money(d.Held).USD(), money.Money(d.Project.Held).USD(), d.DailyUsed,
			money.Money(d.Spent).USD(), s.TotalTokens, s.TotalCost.USD())
	}
	if d.Project.DailyUsed != d.DailyUsed || d.Project.Spent != d.Spent {
		t.Errorf("project: %d tokens today, spent %d; want the key's %d and %d", d.Project.DailyUsed, d.Project.Spent, d.DailyUsed, d.Spent)
	}
	t.Logf("%d requests reached the backend; %d recorded, %d tokens, $%s", e.sim.Stats().Requests, requests(*s), s.TotalTokens, s.TotalCost.USD())
}

// hangUpHTTP1 sends a whole POST and closes the connection after a
// while.
func hangUpHTTP1(addr, path, body string, after time.Duration) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return
	}
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		path, keyAll, len(body), body)
	time.Sleep(after)
	conn.Close()
}

// h2cOnly makes a client speak HTTP/2 without TLS (prior knowledge).
func h2cOnly() *http.Protocols {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return p
}

// TestSlowBodiesAtOnce: 200 bodies that do not arrive in time, at once,
// with admissions decided in Redis: each is answered 408, none 500.
func TestSlowBodiesAtOnce(t *testing.T) {
	lim, _ := fleetLimiter(t, nil, quota.FailClosed)
	e := newEnv(t, sim.Config{}, withLimiter(lim), withLimits(keyAll, quota.Limits{RPM: 10_000, Concurrency: 500}),
		func(c *envConfig) { c.BodyTimeout = 300 * time.Millisecond })
	addr := strings.TrimPrefix(e.gw.URL, "http://")
	head := fmt.Sprintf("POST /v1/chat HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n", keyAll)
	var mu sync.Mutex
	statuses := map[int]int{}
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, _ := rawRequest(t, addr, head)
			mu.Lock()
			statuses[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if statuses[408] != 200 {
		t.Errorf("answers %v, want 200 × 408", statuses)
	}
	if strings.Contains(e.serverLog.String(), "panic") {
		t.Errorf("a handler panicked:\n%.3000s", e.serverLog.String())
	}
}
