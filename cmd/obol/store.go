package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/extra/redisotel/v9"
	"github.com/redis/go-redis/v9"
	bolt "go.etcd.io/bbolt"

	"github.com/obol/obol/admin"
	"github.com/obol/obol/alerts"
	"github.com/obol/obol/gateway"
	"github.com/obol/obol/internal/pgdb"
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
	// deps are the stores replicas share (Redis, PostgreSQL), for
	// readiness; none for the embedded ones.
	deps []gateway.Dependency
	// failures counts failed authentications per address, shared by the
	// replicas; nil: each replica counts its own.
	failures gateway.FailureGuard
	ledger   *usage.Ledger
	keys     keys.Store
	alerts   *alerts.Notifier
	hooks    []alerts.Webhook
	close    func() error
}

// alertAdmin is what the admin API lists and redelivers: nil (501)
// without webhooks.
func (s *store) alertAdmin() admin.AlertAdmin {
	if len(s.hooks) == 0 {
		return nil
	}
	return s.alerts
}

// closeAll writes the ledger's queue, for at most flush, spooling what
// the store will not take, gives the alerts being sent as long, then
// closes the stores.
func (s *store) closeAll(flush time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), flush)
	defer cancel()
	return errors.Join(s.ledger.Close(ctx), s.alerts.Close(ctx), s.close())
}

// embeddedLinger groups the embedded ledger's records into at most 100
// commits (fsyncs) a second: each fsync costs this machine's requests
// more than the wait costs a record.
const embeddedLinger = 10 * time.Millisecond

// redisLinger is how long the settlements and usage records a request
// leaves behind gather before one pipeline writes them: under load it
// carries many requests'; a record waits that much longer to be stored.
const redisLinger = time.Millisecond

// admitPipelines is how many pipelines of admissions may be in flight
// at once; the requests that come meanwhile wait for the next.
const admitPipelines = 2

// ledgerTimeout bounds a ledger write.
const ledgerTimeout = 2 * time.Second

// ledgerOptions: records that cannot be written go to data_dir/spool.
func ledgerOptions(c *Config, log *slog.Logger) usage.Options {
	return usage.Options{SpoolDir: filepath.Join(c.DataDir, "spool"), Log: log, Timeout: ledgerTimeout}
}

// openStore opens the counters (Redis, shared by replicas, or in
// process) and the records (PostgreSQL, the system of record of several
// replicas, or the embedded bbolt file), and the bbolt file under
// data_dir when either is embedded.
func openStore(ctx context.Context, c *Config, log *slog.Logger, tracing bool, hooks []alerts.Webhook) (_ *store, err error) {
	st := &store{}
	var closers []func() error
	st.close = func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	defer func() {
		if err != nil {
			st.close() // st, not the nil this returns
		}
	}()
	var db *bolt.DB
	if c.Redis.URL == "" || c.Postgres.URL == "" {
		if db, err = openBolt(c); err != nil {
			return nil, err
		}
		closers = append(closers, db.Close)
	}
	lo := ledgerOptions(c, log)
	var ledger usage.Store
	var claims alerts.Store
	if c.Postgres.URL == "" {
		u, err := usage.OpenEmbedded(db)
		if err == nil {
			days, entries := usage.DefaultRequestLogDays, usage.DefaultRequestLogEntries
			if c.RequestLog.Days != nil {
				days = *c.RequestLog.Days
			}
			if c.RequestLog.MaxEntries > 0 {
				entries = c.RequestLog.MaxEntries
			}
			u.KeepRequests(days, entries)
		}
		if err != nil {
			return nil, err
		}
		if st.keys, err = keys.OpenEmbedded(db); err != nil {
			return nil, err
		}
		if claims, err = alerts.OpenEmbedded(db); err != nil {
			return nil, err
		}
		ledger, lo.Linger = u, embeddedLinger
		log.Info("records: embedded, single replica", "path", db.Path())
	} else {
		pool, err := openPostgres(ctx, c, log)
		if err != nil {
			return nil, err
		}
		closers = append(closers, func() error { pool.Close(); return nil })
		ledger, st.keys = usage.NewPostgres(pool, *c.Postgres.RequestLogDays), keys.NewPostgres(pool)
		st.deps = append(st.deps, gateway.Dependency{Name: "postgres", Ping: pool, Required: c.Redis.FailMode == "closed",
			Degraded: "keys already known authenticate, new ones cannot; usage records are kept and written when it is back"})
		claims = alerts.NewPostgres(pool)
		lo.Linger = postgresLinger
	}
	st.ledger = usage.NewLedger(ledger, lo)
	st.alerts, st.hooks = alerts.New(alerts.Options{Webhooks: hooks, Store: claims, RetryFor: c.Alerts.RetryFor, Log: log}), hooks
	// Budgets' counters start from the ledger's spend; their thresholds
	// crossed send alerts.
	money := quota.Money{Ledger: st.ledger, OnSpend: st.alerts.Observe}
	if c.Redis.URL == "" {
		e, err := quota.OpenEmbedded(db, log)
		if err != nil {
			return nil, err
		}
		e.SetMoney(money)
		closers = append(closers, func() error { e.Close(); return nil })
		st.quota = e
	} else if err := openRedis(ctx, c, log, tracing, money, st, &closers); err != nil {
		return nil, err
	}
	return st, nil
}

// postgresLinger gathers the records of many requests into one statement.
const postgresLinger = 5 * time.Millisecond

func openBolt(c *Config) (*bolt.DB, error) {
	path := filepath.Join(c.DataDir, "obol.db")
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("embedded store %s is held by another process (another obol on this data_dir?)", path)
		}
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	return db, nil
}

// openRedis sets st's counters in Redis: quota behind a Limiter that
// rides out outages, settlements batched, and failed authentications.
func openRedis(ctx context.Context, c *Config, log *slog.Logger, tracing bool, money quota.Money, st *store, closers *[]func() error) error {
	rdb, err := c.Redis.client()
	if err != nil {
		return err
	}
	*closers = append(*closers, rdb.Close)
	redis.SetLogger(redisLog{log})
	if tracing {
		// Redis calls become spans under the request's (go-redis's hooks;
		// left out when tracing is off, as they cost on every command).
		if err := redisotel.InstrumentTracing(rdb); err != nil {
			return fmt.Errorf("trace redis: %w", err)
		}
	}
	// Settlements of many requests share a pipeline.
	r := quota.NewRedis(rdb, c.Redis.Prefix)
	r.SetPipelines(redisbatch.New(rdb, redisLinger, c.Redis.Timeout))
	// Admissions of concurrent requests share a round trip too, with no
	// wait: one alone leaves at once. Traced, each admission keeps its
	// own command, a span under its request.
	if !tracing {
		r.SetAdmissions(redisbatch.NewEager(rdb, admitPipelines, c.Redis.Timeout))
	}
	r.SetMoney(money)
	mode := quota.FailOpen
	if c.Redis.FailMode == "closed" {
		mode = quota.FailClosed
	}
	// Most requests are admitted from allowance slices this replica
	// takes, without a round trip (docs/operations.md, Allowance slices).
	var qs quota.Store = r
	if c.Redis.sliceActive > 0 {
		qs = quota.NewSlices(r, quota.SliceOptions{Active: c.Redis.sliceActive, Replicas: c.Redis.Replicas, Log: log})
	}
	l := quota.NewLimiter(qs, quota.Options{Timeout: c.Redis.Timeout, Mode: mode, Replicas: c.Redis.Replicas, Log: log, Money: money})
	*closers = append(*closers, func() error { l.Close(); return nil })
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := r.Load(lctx); err != nil {
		// Not fatal: the fail mode covers an unreachable Redis, and the
		// scripts load themselves when it answers.
		log.Warn("counters: Redis not answering at start", "url", redactURL(c.Redis.URL), "err", err)
	} else {
		log.Info("counters: Redis", "url", redactURL(c.Redis.URL), "mode", c.Redis.Mode, "fail_mode", c.Redis.FailMode)
	}
	st.quota = l
	st.deps = append(st.deps, gateway.Dependency{Name: "redis", Ping: l, Required: c.Redis.FailMode == "closed",
		Degraded: "admitting under this replica's share of each limit (fail_mode open)"})
	st.failures = quota.NewSharedFailures(rdb, c.Redis.Prefix, quota.DefaultFailureLimit)
	return nil
}

// openPostgres opens the system of record and applies its migrations. A
// database that does not answer at start is not fatal: the ledger queues
// and spools until it does, cached keys keep working, and the migrations
// are tried again in the background.
func openPostgres(ctx context.Context, c *Config, log *slog.Logger) (*pgxpool.Pool, error) {
	pool, err := pgdb.Open(ctx, c.Postgres.URL, pgdb.Options{ConnectTimeout: c.Postgres.Timeout})
	if err != nil {
		return nil, err
	}
	migrate := func() error {
		mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := pgdb.Migrate(mctx, pool)
		if err == nil {
			log.Info("records: PostgreSQL", "url", redactURL(c.Postgres.URL), "migrations_applied", n)
		}
		return err
	}
	if err := migrate(); err != nil {
		log.Error("records: PostgreSQL not answering at start; records queue and spool until it does", "url", redactURL(c.Postgres.URL), "err", err)
		go func() {
			for migrate() != nil && ctx.Err() == nil {
				time.Sleep(2 * time.Second)
			}
		}()
	}
	return pool, nil
}
