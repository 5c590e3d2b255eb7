package pgdb_test

import (
	"context"
	"sync"
	"testing"

	"github.com/obol/obol/internal/pgdb"
	"github.com/obol/obol/internal/pgtest"
)

// TestConcurrentMigrate: replicas starting at once each migrate the same
// database; every migration is applied once and none fails.
func TestConcurrentMigrate(t *testing.T) {
	srv := pgtest.Start(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, err := pgdb.Open(ctx, srv.URL(), pgdb.Options{})
			if err != nil {
				t.Error(err)
				return
			}
			defer pool.Close()
			if applied[i], err = pgdb.Migrate(ctx, pool); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range applied {
		total += n
	}
	pool := srv.Migrated(t)
	var versions, distinct int
	pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT version) FROM schema_migrations").Scan(&versions, &distinct)
	if versions != distinct || total != versions || versions == 0 {
		t.Errorf("applied %v; schema_migrations has %d rows, %d versions", applied, versions, distinct)
	}
}
