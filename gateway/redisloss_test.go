package gateway_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/internal/redistest"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

// TestRedisFlushKeepsLimits: two replicas on a Redis that is flushed
// (FLUSHALL) while a key has spent its day's tokens and another has its
// five concurrent streams open. The first stays refused (its day is
// rebuilt from the ledger), and within a second the replicas register the
// streams' leases again, so the second's sixth request is refused too.
func TestRedisFlushKeepsLimits(t *testing.T) {
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	ledger := postgresLedger(t)
	var replicas []*env
	for range 2 {
		replicas = append(replicas, newEnv(t, sim.Config{ReplyTokens: 2}, withLedger(ledger),
			withLimiter(replicaLimiter(t, rdb, "obol:", ledger)),
			withLimits(keyAll, quota.Limits{TPD: 150}), withLimits(keyHermes, quota.Limits{Concurrency: 5})))
	}
	// keyAll spends its day: hi with two tokens uses 6 and reserves 10,
	// one request at a time, each settled before the next.
	e := replicas[0]
	day := quota.One("key_all", quota.Limits{TPD: 150})
	var served int64
	for i := 0; ; i++ {
		resp := replicas[i%2].post(t, "/v1/chat", keyAll, hi+`,"max_tokens":2}`)
		resp.Body.Close()
		if resp.StatusCode == 429 {
			break
		}
		served++
		poll.Until(t, "settled", func() bool {
			d, err := e.quota.Peek(t.Context(), day)
			return err == nil && d.DailyUsed == 6*served
		})
	}
	if served != 24 {
		t.Fatalf("%d served of TPD 150, want 24", served)
	}
	poll.Until(t, "every request recorded", func() bool { return requests(e.usageOf(t, keyAll, "")) == served })
	// keyHermes opens its five streams, held open by the backends.
	for _, r := range replicas {
		r.sim.SetConfig(sim.Config{ReplyTokens: 40, TokensPerSecond: 20})
	}
	for i := range 5 {
		req, _ := http.NewRequestWithContext(t.Context(), "POST", replicas[i%2].gw.URL+"/v1/chat/stream", strings.NewReader(hi+`}`))
		req.Header.Set("Authorization", "Bearer "+keyHermes)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("stream %d: %v %v", i, resp, err)
		}
		t.Cleanup(func() { resp.Body.Close() })
	}
	if code := readError(t, e.post(t, "/v1/chat", keyHermes, hi+`}`)).Error.Code; code != "rate_limit" {
		t.Fatalf("a sixth request before the flush: %s", code)
	}

	srv.Flush()
	resp := replicas[1].post(t, "/v1/chat", keyAll, hi+`,"max_tokens":2}`)
	if resp.StatusCode != 429 || !strings.Contains(readError(t, resp).Error.Message, "tokens per day") {
		t.Errorf("a key that spent its day, after the flush: %d, want 429 on TPD", resp.StatusCode)
	}
	poll.Until(t, "the streams' leases registered again", func() bool { return inFlight(t, e, keyHermes) == 5 })
	resp = replicas[1].post(t, "/v1/chat", keyHermes, hi+`}`)
	if resp.StatusCode != 429 || !strings.Contains(readError(t, resp).Error.Message, "concurrent") {
		t.Errorf("a sixth request after the flush: %d, want 429 on concurrency", resp.StatusCode)
	}
}

// inFlight is GET /v1/key's remaining.in_flight of a key.
func inFlight(t *testing.T, e *env, key string) int64 {
	t.Helper()
	var v struct {
		Remaining struct {
			InFlight int64 `json:"in_flight"`
		} `json:"remaining"`
	}
	resp := e.get(t, "/v1/key", key)
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v.Remaining.InFlight
}
