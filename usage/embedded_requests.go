package usage

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// The embedded store's request log: a bucket keyed by the request's time
// (big-endian nanoseconds) and id, so that a cursor walks it newest first
// without sorting; bounded by days and by entries, the oldest dropped
// first.

var logBucket = []byte("request_log")

// Embedded request log bounds, unless KeepRequests says otherwise.
const (
	DefaultRequestLogDays    = 7
	DefaultRequestLogEntries = 100_000
)

// KeepRequests bounds the request log: days kept (0: no log) and entries
// at most.
func (e *Embedded) KeepRequests(days, entries int) {
	e.logDays.Store(int64(days))
	e.logMax.Store(int64(entries))
}

func logKey(t time.Time, id string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(t.UnixNano()))
	return append(k, id...)
}

// logRecord adds rec to the request log in tx.
func (e *Embedded) logRecord(tx *bolt.Tx, rec Record) error {
	if e.logDays.Load() <= 0 {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(logBucket)
	if err != nil {
		return err
	}
	v, err := json.Marshal(entryOf(rec))
	if err != nil {
		return err
	}
	e.logged.Add(1)
	return b.Put(logKey(rec.Time, rec.RequestID), v)
}

// pruneLog drops the entries past the log's days, and the oldest past its
// size (checked every thousand entries written).
func (e *Embedded) pruneLog(tx *bolt.Tx, now time.Time, byAge bool) error {
	b := tx.Bucket(logBucket)
	if b == nil {
		return nil
	}
	// Keys are gathered, then deleted: a bbolt cursor may skip a key
	// after a delete under it.
	var drop [][]byte
	c := b.Cursor()
	if byAge {
		keep := logKey(now.AddDate(0, 0, -int(max(e.logDays.Load(), 0))), "")
		for k, _ := c.First(); k != nil && bytes.Compare(k, keep) < 0; k, _ = c.Next() {
			drop = append(drop, bytes.Clone(k))
		}
	}
	if e.logged.Load() >= 1000 {
		e.logged.Store(0)
		over := b.Stats().KeyN - len(drop) - int(e.logMax.Load())
		k, _ := c.First()
		for range len(drop) {
			k, _ = c.Next()
		}
		for ; k != nil && over > 0; k, _ = c.Next() {
			drop = append(drop, bytes.Clone(k))
			over--
		}
	}
	for _, k := range drop {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// Requests reads a page of the request log, newest first.
func (e *Embedded) Requests(_ context.Context, q RequestQuery) ([]RequestEntry, error) {
	if e.logDays.Load() <= 0 {
		return nil, ErrNoRequestLog
	}
	var out []RequestEntry
	err := e.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(logBucket)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		k, v := c.Last()
		if q.hasBefore {
			k, v = c.Seek(logKey(q.beforeT, q.beforeID))
			if k == nil {
				k, v = c.Last()
			}
			for k != nil && bytes.Compare(k, logKey(q.beforeT, q.beforeID)) >= 0 {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) <= q.limitOrDefault; k, v = c.Prev() {
			var en RequestEntry
			if err := json.Unmarshal(v, &en); err != nil {
				return fmt.Errorf("a request log entry: %w", err)
			}
			if !q.End.IsZero() && !en.Time.Before(q.End) {
				continue
			}
			if !q.Start.IsZero() && en.Time.Before(q.Start) {
				break // older from here on
			}
			if q.matches(&en) {
				out = append(out, en)
			}
		}
		return nil
	})
	return out, err
}
