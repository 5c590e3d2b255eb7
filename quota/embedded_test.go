package quota

import (
	"context"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestEmbeddedDailySurvivesRestart: the day's tokens are still spent after
// the store is closed and opened again.
func TestEmbeddedDailySurvivesRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "obol.db")
	lim := Limits{RPM: 100, TPM: 100000, TPD: 1000}
	ctx := context.Background()

	open := func() (*bolt.DB, *Embedded) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		e, err := OpenEmbedded(db, nil)
		if err != nil {
			t.Fatal(err)
		}
		return db, e
	}
	db, e := open()
	d, _ := e.Admit(ctx, One("key_a", lim), 500, 0)
	if !d.Allowed {
		t.Fatalf("%+v", d)
	}
	e.Settle(ctx, d.Reservation, 700, 0) // the backend used more than estimated
	d, _ = e.Admit(ctx, One("key_b", lim), 100, 0)
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	db.Close()

	db, e = open()
	defer db.Close()
	defer e.Close()
	d, _ = e.Admit(ctx, One("key_a", lim), 400, 0)
	if d.Allowed || d.Denied != DailyTokens || d.DailyUsed != 700 {
		t.Fatalf("after a restart, key_a's day: %+v", d)
	}
	d, _ = e.Admit(ctx, One("key_b", lim), 900, 0)
	if !d.Allowed || d.DailyUsed != 100 {
		t.Fatalf("after a restart, key_b's day: %+v", d)
	}
}
