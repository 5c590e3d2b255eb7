// Package quota holds tiers and limits: admission before a backend is
// called and settlement after it, in Redis and in an embedded store.
package quota
