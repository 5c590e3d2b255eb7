package pgtest

import (
	"context"
	"testing"
)

// TestSharedAndOwnServer: a migrated schema of the test's own, and a
// server that stops and restarts with its data.
func TestSharedAndOwnServer(t *testing.T) {
	pool, _ := Shared(t)
	ctx := context.Background()
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM usage_hourly").Scan(&n); err != nil || n != 0 {
		t.Fatalf("shared schema: %d, %v", n, err)
	}
	s := Start(t)
	own := s.Migrated(t)
	if _, err := own.Exec(ctx, "INSERT INTO usage_request_ids VALUES ('r1', now())"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if _, err := own.Exec(ctx, "SELECT 1"); err == nil {
		t.Fatal("a stopped server answered")
	}
	s.Restart()
	if err := own.QueryRow(ctx, "SELECT count(*) FROM usage_request_ids").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after a restart: %d, %v", n, err)
	}
}
