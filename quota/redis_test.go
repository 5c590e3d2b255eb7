package quota

import (
	"context"
	"testing"
	"time"

	"github.com/obol/obol/internal/redisbatch"
	"github.com/obol/obol/internal/redistest"
)

// testRedis returns a limiter on the shared test Redis under a prefix of
// its own, with a clock the test moves; concurrent admissions share
// pipelines, as the gateway's do.
func testRedis(t *testing.T) (*redisStore, *time.Time) {
	t.Helper()
	rdb, prefix := redistest.Shared(t)
	clock := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	r := NewRedis(rdb, prefix)
	r.SetAdmissions(redisbatch.NewEager(rdb, 2, 5*time.Second))
	r.now = func() time.Time { return clock }
	return &redisStore{r}, &clock
}

// testSlices returns Slices over testRedis's store, for replicas
// replicas.
func testSlices(t *testing.T, replicas int) (*slicesStore, *time.Time) {
	t.Helper()
	r, clock := testRedis(t)
	// The keeper stays still (Tick): the test moves the clock, and flushes.
	s := NewSlices(r.Redis, SliceOptions{Replicas: replicas, Tick: time.Hour})
	t.Cleanup(func() { s.Close(context.Background()) })
	return &slicesStore{s}, clock
}

// slicesStore settles one reservation at a time, and brings Redis up to
// date at once rather than at the next tick, so that the semantic tests
// read what they settled.
type slicesStore struct{ *Slices }

func (s *slicesStore) Settle(ctx context.Context, res *Reservation, actual, cost int64) error {
	if err := s.SettleBatch(ctx, []Settlement{{Res: res, Actual: actual, Cost: cost}}); err != nil {
		return err
	}
	return s.flush(ctx, false)
}

func (s *slicesStore) SetMoney(m Money) { s.r.SetMoney(m) }

// redisStore settles one reservation at a time, as the semantic tests
// do; the gateway settles through a Limiter, in batches.
type redisStore struct{ *Redis }

func (r *redisStore) Settle(ctx context.Context, res *Reservation, actual, cost int64) error {
	return r.SettleBatch(ctx, []Settlement{{Res: res, Actual: actual, Cost: cost}})
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

// TestSettleBatch: settlements of several keys in one pipeline land as
// one by one would, each once, also after SCRIPT FLUSH; and a Limiter
// writes what it queued by Close.
func TestSettleBatch(t *testing.T) {
	r, _ := testRedis(t)
	ctx := context.Background()
	lim := Limits{TPM: 10_000, TPD: 100_000}
	var batch []Settlement
	for i, key := range []string{"a", "b", "c", "a"} {
		d, err := r.Admit(ctx, One(key, lim), 1000, 0)
		if err != nil || !d.Allowed {
			t.Fatalf("admit %s: %+v %v", key, d, err)
		}
		batch = append(batch, Settlement{Res: d.Reservation, Actual: int64(100 * (i + 1))})
	}
	batch = append(batch, Settlement{Res: batch[0].Res, Actual: batch[0].Res.Tokens}) // exact: nothing to do
	if err := r.rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := r.SettleBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]int64{"a": 100 + 400, "b": 200, "c": 300} {
		if d, _ := r.Peek(ctx, One(key, lim)); d.DailyUsed != want {
			t.Errorf("%s: %d tokens today, want %d", key, d.DailyUsed, want)
		}
	}

	l := NewLimiter(r, Options{})
	d, err := l.Admit(ctx, One("d", lim), 1000, 0)
	if err != nil || !d.Allowed {
		t.Fatal(err)
	}
	l.Settle(ctx, d.Reservation, 10, 0)
	l.Close()
	if d, _ := r.Peek(ctx, One("d", lim)); d.DailyUsed != 10 {
		t.Errorf("d after Close: %d tokens, want 10", d.DailyUsed)
	}
}
