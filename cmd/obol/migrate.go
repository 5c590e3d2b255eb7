package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/obol/obol/internal/pgdb"
)

// migrate is obol migrate: apply the PostgreSQL migrations of the
// configuration's postgres.url without serving (serve applies them too).
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) error {
	cfg, err := serveConfig(args, stderr, getenv)
	if err != nil {
		return err
	}
	if cfg.Postgres.URL == "" {
		return &configError{msg: "migrate: the configuration has no postgres.url"}
	}
	pool, err := pgdb.Open(ctx, cfg.Postgres.URL, pgdb.Options{ConnectTimeout: cfg.Postgres.Timeout})
	if err != nil {
		return err
	}
	defer pool.Close()
	mctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	n, err := pgdb.Migrate(mctx, pool)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "obol migrate: %d migrations applied; the schema is current\n", n)
	return nil
}
