package quota

import (
	"context"
	"testing"
	"time"

	"github.com/obol/obol/internal/redistest"
)

// testRedis returns a limiter on the shared test Redis under a prefix of
// its own, with a clock the test moves.
func testRedis(t *testing.T) (*Redis, *time.Time) {
	t.Helper()
	rdb, prefix := redistest.Shared(t)
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	r := NewRedis(rdb, prefix)
	r.now = func() time.Time { return clock }
	return r, &clock
}

// TestScriptFlushed: after SCRIPT FLUSH (a Redis restart, a failover),
// go-redis's EVALSHA falls back to EVAL on NOSCRIPT and admission goes on.
func TestScriptFlushed(t *testing.T) {
	r, _ := testRedis(t)
	admit(t, r, Limits{RPM: 5}, 1)
	if err := r.rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if d := admit(t, r, Limits{RPM: 5}, 1); !d.Allowed || d.RequestsRemaining != 3 {
		t.Fatalf("after SCRIPT FLUSH: %+v", d)
	}
}

// TestRedisClock: without an injected clock the scripts use Redis TIME.
func TestRedisClock(t *testing.T) {
	r, _ := testRedis(t)
	r.now = nil
	lim := Limits{RPM: 2, TPM: 1000}
	for i := 0; i < 2; i++ {
		if d := admit(t, r, lim, 10); !d.Allowed {
			t.Fatalf("request %d: %+v", i, d)
		}
	}
	d := admit(t, r, lim, 10)
	if d.Allowed || d.Denied != Requests || d.RetryAfter <= 0 || d.RetryAfter > 30*time.Second {
		t.Fatalf("third request: %+v", d)
	}
}
