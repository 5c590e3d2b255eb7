package quota

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/syncbuf"

	"github.com/redis/go-redis/v9"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/obol/obol/internal/metrictest"
	"github.com/obol/obol/internal/redistest"
)

type limiterEnv struct {
	srv    *redistest.Server
	redis  *Redis
	lim    *Limiter
	log    *syncbuf.Buffer
	reader *sdkmetric.ManualReader
}

// newLimiterEnv runs a Redis of the test's own behind a Limiter, with the
// client settings the gateway uses: no retries, short timeouts.
func newLimiterEnv(t *testing.T, mode FailMode, replicas int) *limiterEnv {
	t.Helper()
	return newLimiterEnvMoney(t, mode, replicas, Money{})
}

// newLimiterEnvMoney is newLimiterEnv whose budgets and days start from
// money's ledger.
func newLimiterEnvMoney(t *testing.T, mode FailMode, replicas int, money Money) *limiterEnv {
	t.Helper()
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond,
		WriteTimeout: 200 * time.Millisecond, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	env := &limiterEnv{srv: srv, log: &syncbuf.Buffer{}, reader: sdkmetric.NewManualReader()}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(env.reader))
	env.redis = NewRedis(rdb, "t:")
	env.redis.SetMoney(money)
	env.lim = NewLimiter(env.redis, Options{
		Mode: mode, Replicas: replicas, Timeout: 200 * time.Millisecond, ProbeInterval: 20 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(env.log, nil)), Meter: mp.Meter("test"), Money: money,
	})
	t.Cleanup(env.lim.Close)
	return env
}

// counter returns the sum of a counter over all its attribute sets.
func (e *limiterEnv) counter(t *testing.T, name string) int64 {
	t.Helper()
	return metrictest.Sum(t, e.reader, name)
}

// waitAvailable waits for the limiter to find the store again.
func waitAvailable(t *testing.T, l *Limiter) {
	t.Helper()
	for i := 0; l.down.Load(); i++ {
		if i == 500 {
			t.Fatal("the limiter did not go back to the store")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLimiterFailOpen(t *testing.T) {
	env := newLimiterEnv(t, FailOpen, 2)
	ctx := context.Background()
	lim := Limits{RPM: 6, TPM: 100000}
	d, err := env.lim.Admit(ctx, One("k", lim), 10, 0)
	if err != nil || !d.Allowed || d.RequestsRemaining != 5 {
		t.Fatalf("with Redis up: %+v, %v", d, err)
	}

	env.srv.Stop()
	// Down: each of the 2 replicas admits half the RPM, 3, locally.
	var allowed int
	for i := 0; i < 5; i++ {
		d, err := env.lim.Admit(ctx, One("k", lim), 10, 0)
		if err != nil {
			t.Fatalf("fail open returned an error: %v", err)
		}
		if d.Allowed {
			allowed++
			if err := env.lim.Settle(ctx, d.Reservation, 5, 0); err != nil {
				t.Fatalf("a local reservation settles locally: %v", err)
			}
		}
	}
	if allowed != 3 {
		t.Errorf("admitted %d locally, want 3 (RPM 6 over 2 replicas)", allowed)
	}
	if got := strings.Count(env.log.String(), "quota store unavailable"); got != 1 {
		t.Errorf("logged the outage %d times, want once:\n%s", got, env.log)
	}
	if got := env.counter(t, "obol.quota.fail_open.admissions"); got != 5 {
		t.Errorf("fail-open admissions metric = %d, want 5", got)
	}
	if got := env.counter(t, "obol.quota.store.errors"); got < 1 {
		t.Errorf("store errors metric = %d", got)
	}

	env.srv.Restart() // empty: the key starts afresh in Redis
	waitAvailable(t, env.lim)
	d, err = env.lim.Admit(ctx, One("k", lim), 10, 0)
	if err != nil || !d.Allowed || d.RequestsRemaining != 5 {
		t.Fatalf("after Redis came back: %+v, %v", d, err)
	}
	if !strings.Contains(env.log.String(), "quota store answering again") {
		t.Errorf("recovery not logged:\n%s", env.log)
	}
}

// TestLimiterFailOpenConcurrency: with Redis down, each of 2 replicas
// holds half a key's concurrency cap locally, and a settlement frees a
// slot.
func TestLimiterFailOpenConcurrency(t *testing.T) {
	env := newLimiterEnv(t, FailOpen, 2)
	ctx := context.Background()
	lim := Limits{Concurrency: 4}
	env.srv.Stop()
	var held []*Reservation
	for i := 0; i < 3; i++ {
		d, err := env.lim.Admit(ctx, One("k", lim), 1, 0)
		if err != nil {
			t.Fatal(err)
		}
		if d.Allowed {
			held = append(held, d.Reservation)
		} else if d.Denied != Concurrent {
			t.Errorf("refused by %v, want concurrency", d.Denied)
		}
	}
	if len(held) != 2 {
		t.Fatalf("%d in flight locally, want 2 (a cap of 4 over 2 replicas)", len(held))
	}
	if err := env.lim.Settle(ctx, held[0], 1, 0); err != nil {
		t.Fatal(err)
	}
	if d, err := env.lim.Admit(ctx, One("k", lim), 1, 0); err != nil || !d.Allowed {
		t.Errorf("after a settlement: %+v, %v", d, err)
	}
}

func TestLimiterFailClosed(t *testing.T) {
	env := newLimiterEnv(t, FailClosed, 1)
	ctx := context.Background()
	lim := Limits{RPM: 6}
	env.srv.Stop()
	for i := 0; i < 3; i++ {
		if _, err := env.lim.Admit(ctx, One("k", lim), 1, 0); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("fail closed: %v, want ErrUnavailable", err)
		}
	}
	if _, err := env.lim.Peek(ctx, One("k", lim)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("peek, fail closed: %v", err)
	}
	env.srv.Restart()
	waitAvailable(t, env.lim)
	if d, err := env.lim.Admit(ctx, One("k", lim), 1, 0); err != nil || !d.Allowed {
		t.Fatalf("after Redis came back: %+v, %v", d, err)
	}
}

// TestLimiterUnresponsiveStore: a Redis that accepts and never answers (a
// partition) costs one timeout, not a hang, then the limiter stops asking.
func TestLimiterUnresponsiveStore(t *testing.T) {
	env := newLimiterEnv(t, FailClosed, 1)
	ctx := context.Background()
	lim := Limits{RPM: 6}
	if _, err := env.lim.Admit(ctx, One("k", lim), 1, 0); err != nil {
		t.Fatal(err)
	}
	env.srv.Pause()
	for i := 0; i < 3; i++ {
		if _, err := env.lim.Admit(ctx, One("k", lim), 1, 0); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("paused Redis: %v, want ErrUnavailable", err)
		}
	}
	if got := env.counter(t, "obol.quota.store.errors"); got != 1 {
		t.Errorf("store errors = %d, want 1: later requests must not wait on the store again", got)
	}
	env.srv.Resume()
	waitAvailable(t, env.lim)
	// The call that timed out was in Redis's socket and ran on resume: it
	// stays charged, once (no client retry could charge it twice). With
	// the first request and this one, 3 of 6 remain.
	if d, err := env.lim.Admit(ctx, One("k", lim), 1, 0); err != nil || !d.Allowed || d.RequestsRemaining != 3 {
		t.Fatalf("after Redis resumed: %+v, %v", d, err)
	}
}

// TestLimiterClientGone: a caller that gives up is not a store outage.
func TestLimiterClientGone(t *testing.T) {
	env := newLimiterEnv(t, FailClosed, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := env.lim.Admit(ctx, One("k", Limits{RPM: 6}), 1, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	if env.lim.down.Load() {
		t.Fatal("a cancelled caller marked the store unavailable")
	}
}
