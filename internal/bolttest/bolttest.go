// Package bolttest opens a bbolt file of a test's own, as the embedded
// store keeps obol.db, closed when the test ends.
package bolttest

import (
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// Open returns a fresh bbolt database in the test's temporary directory.
func Open(t testing.TB) *bolt.DB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "obol.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
