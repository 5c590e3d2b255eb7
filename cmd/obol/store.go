package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/redisbatch"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// redisLog sends go-redis's own messages (a pool that cannot dial, say)
// to the gateway's log, so that every line stays structured.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.Warn("redis client: "+fmt.Sprintf(format, v...), "component", "go-redis")
}

// store is the quota store, the usage ledger, and how to close them.
type store struct {
	quota gateway.Quota
	// shared is the quota store when replicas share it (Redis), for
	// readiness; nil for the embedded one.
	shared gateway.Pinger
	// failures counts failed authentications per address, shared by the
	// replicas; nil: each replica counts its own.
	failures gateway.FailureGuard
	ledger   *usage.Ledger
	keys     keys.Store
	close    func() error
}

// closeAll writes the ledger's queue, for at most flush, spooling what
// the store will not take, then closes the stores.
func (s *store) closeAll(flush time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), flush)
	defer cancel()
	return errors.Join(s.ledger.Close(ctx), s.close())
}

// embeddedLinger groups the embedded ledger's records into at most 100
// commits (fsyncs) a second: each fsync costs this machine's requests
// more than the wait costs a record.
const embeddedLinger = 10 * time.Millisecond

// redisLinger is how long the settlements and usage records a request
// leaves behind gather before one pipeline writes them: under load it
// carries many requests'; a record waits that much longer to be stored.
const redisLinger = time.Millisecond

// ledgerTimeout bounds a ledger write.
const ledgerTimeout = 2 * time.Second

// ledgerOptions: records that cannot be written go to data_dir/spool.
func ledgerOptions(c *Config, log *slog.Logger) usage.Options {
	return usage.Options{SpoolDir: filepath.Join(c.DataDir, "spool"), Log: log, Timeout: ledgerTimeout}
}

// openStore opens the shared Redis, or the embedded store under data_dir
// when no Redis URL is set.
func openStore(ctx context.Context, c *Config, log *slog.Logger, tracing bool) (*store, error) {
	if c.Redis.URL == "" {
		path := filepath.Join(c.DataDir, "obol.db")
		db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
		if err != nil {
			if errors.Is(err, bolt.ErrTimeout) {
				return nil, fmt.Errorf("embedded store %s is held by another process (another obol on this data_dir?)", path)
			}
			return nil, fmt.Errorf("embedded store: %w", err)
		}
		e, err := quota.OpenEmbedded(db, log)
		if err != nil {
			db.Close()
			return nil, err
		}
		u, err := usage.OpenEmbedded(db)
		var ks *keys.Embedded
		if err == nil {
			ks, err = keys.OpenEmbedded(db)
		}
		if err != nil {
			e.Close()
			db.Close()
			return nil, err
		}
		log.Info("store: embedded, single replica", "path", path)
		lo := ledgerOptions(c, log)
		lo.Linger = embeddedLinger
		return &store{quota: e, ledger: usage.NewLedger(u, lo), keys: ks,
			close: func() error { return errors.Join(e.Close(), db.Close()) }}, nil
	}
	rdb, err := c.Redis.client()
	if err != nil {
		return nil, err
	}
	redis.SetLogger(redisLog{log})
	if tracing {
		// Redis calls become spans under the request's (go-redis's hooks;
		// left out when tracing is off, as they cost on every command).
		if err := redisotel.InstrumentTracing(rdb); err != nil {
			return nil, fmt.Errorf("trace redis: %w", err)
		}
	}
	// Settlements and records share round trips, and the batcher's
	// linger is theirs (the settler and the ledger write at once).
	batch := redisbatch.New(rdb, redisLinger, ledgerTimeout)
	r := quota.NewRedis(rdb, c.Redis.Prefix)
	r.SetPipelines(batch)
	mode := quota.FailOpen
	if c.Redis.FailMode == "closed" {
		mode = quota.FailClosed
	}
	l := quota.NewLimiter(r, quota.Options{Timeout: c.Redis.Timeout, Mode: mode, Replicas: c.Redis.Replicas, Log: log})
	u := usage.NewRedis(rdb, c.Redis.Prefix)
	u.SetPipelines(batch)
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := errors.Join(r.Load(lctx), u.Load(lctx)); err != nil {
		// Not fatal: the fail mode covers an unreachable Redis, and the
		// scripts load themselves when it answers.
		log.Warn("store: Redis not answering at start", "url", redactURL(c.Redis.URL), "err", err)
	} else {
		log.Info("store: Redis", "url", redactURL(c.Redis.URL), "mode", c.Redis.Mode, "fail_mode", c.Redis.FailMode)
	}
	lo := ledgerOptions(c, log)
	return &store{quota: l, shared: l, failures: quota.NewSharedFailures(rdb, c.Redis.Prefix, quota.DefaultFailureLimit), ledger: usage.NewLedger(u, lo), keys: keys.NewRedis(rdb, c.Redis.Prefix),
		close: func() error { l.Close(); return rdb.Close() }}, nil
}
