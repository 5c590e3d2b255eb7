package usage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

var (
	rowsBucket = []byte("usage_rows") // "YYYY-MM/key/model" → prompt, completion, requests (3 × uint64)
	reqsBucket = []byte("usage_reqs") // request id → unix seconds recorded
)

// Embedded is the single-replica ledger in a bbolt file. A record is
// durable once Record or Write returns: bbolt fsyncs each commit. Records
// written together share one commit, so the fsync is paid per batch, not
// per request.
type Embedded struct {
	db *bolt.DB
}

// OpenEmbedded prepares the ledger's buckets in db and forgets request ids
// older than the idempotency window.
func OpenEmbedded(db *bolt.DB) (*Embedded, error) {
	cutoff := time.Now().Add(-recordTTL).Unix()
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(rowsBucket); err != nil {
			return err
		}
		reqs, err := tx.CreateBucketIfNotExists(reqsBucket)
		if err != nil {
			return err
		}
		var old [][]byte
		reqs.ForEach(func(k, v []byte) error {
			if len(v) != 8 || int64(binary.BigEndian.Uint64(v)) < cutoff {
				old = append(old, bytes.Clone(k))
			}
			return nil
		})
		for _, k := range old {
			reqs.Delete(k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded ledger: %w", err)
	}
	return &Embedded{db: db}, nil
}

// Record adds rec unless its request id is there already; it reports
// whether it was added.
func (e *Embedded) Record(_ context.Context, rec Record) (bool, error) {
	added := false
	err := e.db.Batch(func(tx *bolt.Tx) error {
		var err error
		added, err = add(tx, rec) // Batch may run this again: added is reset
		return err
	})
	if err != nil {
		return false, fmt.Errorf("record %s: %w", rec.RequestID, err)
	}
	return added, nil
}

// Write adds recs in one transaction: one fsync for the batch.
func (e *Embedded) Write(_ context.Context, recs []Record) error {
	err := e.db.Update(func(tx *bolt.Tx) error {
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
	reqs := tx.Bucket(reqsBucket)
	if reqs.Get([]byte(rec.RequestID)) != nil {
		return false, nil
	}
	if err := reqs.Put([]byte(rec.RequestID), binary.BigEndian.AppendUint64(nil, uint64(rec.Time.Unix()))); err != nil {
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
