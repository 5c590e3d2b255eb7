package usage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	rowsBucket = []byte("usage_rows") // "YYYY-MM/key/model" → prompt, completion, requests (3 × uint64)
	reqsBucket = []byte("usage_reqs") // a bucket per UTC day of request: request id → nothing
)

// Embedded is the single-replica ledger in a bbolt file. A record is
// durable once Record or Write returns: bbolt fsyncs each commit. Records
// written together share one commit, so the fsync is paid per batch, not
// per request.
//
// Request ids are kept in a bucket per UTC day of the request, so that
// forgetting those past the idempotency window drops whole days instead
// of scanning every id.
type Embedded struct {
	db     *bolt.DB
	pruned atomic.Value // the day (YYYYMMDD) of the last pruning
}

// OpenEmbedded prepares the ledger's buckets in db and forgets request ids
// older than the idempotency window.
func OpenEmbedded(db *bolt.DB) (*Embedded, error) {
	e := &Embedded{db: db}
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(rowsBucket); err != nil {
			return err
		}
		if _, err := tx.CreateBucketIfNotExists(reqsBucket); err != nil {
			return err
		}
		return e.prune(tx, time.Now())
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded ledger: %w", err)
	}
	return e, nil
}

func dayOf(t time.Time) string { return t.UTC().Format("20060102") }

// prune drops the request ids of days past the idempotency window, and
// anything in the ids bucket that is not a day.
func (e *Embedded) prune(tx *bolt.Tx, now time.Time) error {
	today := dayOf(now)
	if last, _ := e.pruned.Load().(string); last == today {
		return nil
	}
	keep := dayOf(now.Add(-recordTTL))
	reqs := tx.Bucket(reqsBucket)
	var old, stray [][]byte
	reqs.ForEach(func(k, v []byte) error {
		switch {
		case v != nil:
			stray = append(stray, bytes.Clone(k))
		case string(k) < keep:
			old = append(old, bytes.Clone(k))
		}
		return nil
	})
	for _, k := range old {
		if err := reqs.DeleteBucket(k); err != nil {
			return err
		}
	}
	for _, k := range stray {
		if err := reqs.Delete(k); err != nil {
			return err
		}
	}
	e.pruned.Store(today)
	return nil
}

// Write adds recs in one transaction: one fsync for the batch.
func (e *Embedded) Write(_ context.Context, recs []Record) error {
	err := e.db.Update(func(tx *bolt.Tx) error {
		if err := e.prune(tx, time.Now()); err != nil {
			return err
		}
		for _, rec := range recs {
			if _, err := add(tx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write %d usage records: %w", len(recs), err)
	}
	return nil
}

// add adds rec in tx unless its request id is there already.
func add(tx *bolt.Tx, rec Record) (bool, error) {
	ids, err := tx.Bucket(reqsBucket).CreateBucketIfNotExists([]byte(dayOf(rec.Time)))
	if err != nil {
		return false, err
	}
	if ids.Get([]byte(rec.RequestID)) != nil {
		return false, nil
	}
	if err := ids.Put([]byte(rec.RequestID), []byte{}); err != nil {
		return false, err
	}
	rows := tx.Bucket(rowsBucket)
	k := []byte(rec.Period() + "/" + rec.Key + "/" + rec.Model)
	row := decodeRow(rows.Get(k))
	row.Prompt += rec.PromptTokens
	row.Completion += rec.CompletionTokens
	row.Requests++
	return true, rows.Put(k, encodeRow(row))
}

// Summary is key's ledger for a month.
func (e *Embedded) Summary(_ context.Context, key, period string) (*Summary, error) {
	s := newSummary(period)
	prefix := []byte(period + "/" + key + "/")
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(rowsBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			s.add(string(k[len(prefix):]), decodeRow(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage of %s in %s: %w", key, period, err)
	}
	return s, nil
}

// All is every key's ledger for a month, in one read transaction.
func (e *Embedded) All(_ context.Context, period string) (map[string]*Summary, error) {
	out := map[string]*Summary{}
	prefix := []byte(period + "/")
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(rowsBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			// Model names have no "/"; key ids might.
			rest := k[len(prefix):]
			i := bytes.LastIndexByte(rest, '/')
			if i < 0 {
				continue
			}
			key, model := rest[:i], rest[i+1:]
			s := out[string(key)]
			if s == nil {
				s = newSummary(period)
				out[string(key)] = s
			}
			s.add(string(model), decodeRow(v))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage in %s: %w", period, err)
	}
	return out, nil
}

func encodeRow(r Row) []byte {
	b := make([]byte, 0, 24)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Prompt))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Completion))
	return binary.BigEndian.AppendUint64(b, uint64(r.Requests))
}

func decodeRow(b []byte) Row {
	if len(b) != 24 {
		return Row{}
	}
	return Row{
		Prompt:     int64(binary.BigEndian.Uint64(b[0:])),
		Completion: int64(binary.BigEndian.Uint64(b[8:])),
		Requests:   int64(binary.BigEndian.Uint64(b[16:])),
	}
}
