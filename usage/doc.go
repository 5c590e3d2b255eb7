// Package usage is the monthly per-model ledger of every request's tokens:
// one row per (key, UTC month, model), each request added once by its id,
// in Redis shared by every replica or in the embedded bbolt store.
package usage
