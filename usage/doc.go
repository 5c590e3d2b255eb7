// Package usage is the ledger of every request's tokens and cost: rows
// per (key, project, model, kind) and UTC hour in PostgreSQL, shared by
// every replica, or UTC day in the embedded bbolt store, each request
// added once by its id, queued, batched and spooled so none is lost.
package usage
