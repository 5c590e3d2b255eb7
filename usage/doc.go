// Package usage is the monthly per-model ledger of every request's tokens,
// in Redis and in an embedded store.
package usage
