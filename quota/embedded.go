package quota

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// bucket holds the daily token counters: "YYYYMMDD/key" → int64.
var bucket = []byte("quota_tpd")

// Embedded is the single-replica store used when no Redis is configured:
// Memory's semantics, with the daily counters persisted in a bbolt file so
// that a restart does not hand a key a fresh day. The minute allowances
// are not persisted; a restart refills them, as a minute would.
//
// Counters are written behind, once per flush interval and at Close, not
// per request: a bbolt commit is an fsync, which would cost more than the
// request. A kill -9 loses at most one interval of daily counting (the key
// gets those tokens again); a clean stop loses nothing.
type Embedded struct {
	*Memory
	db   *bolt.DB
	log  *slog.Logger
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// FlushInterval is how often Embedded writes its daily counters.
const FlushInterval = time.Second

// OpenEmbedded loads the daily counters of today and yesterday from db
// and starts writing changes back to it.
func OpenEmbedded(db *bolt.DB, log *slog.Logger) (*Embedded, error) {
	e := &Embedded{Memory: NewMemory(), db: db, log: log, stop: make(chan struct{})}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	today, _ := day(time.Now())
	keep := yesterday(today)
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		var stale [][]byte
		err = b.ForEach(func(k, v []byte) error {
			d, key, ok := bytes.Cut(k, []byte("/"))
			if !ok || len(v) != 8 || string(d) < keep {
				stale = append(stale, bytes.Clone(k))
				return nil
			}
			e.loadDaily(string(d), string(key), int64(binary.BigEndian.Uint64(v)))
			return nil
		})
		for _, k := range stale {
			b.Delete(k)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open embedded quota store: %w", err)
	}
	e.done.Add(1)
	go e.flusher()
	return e, nil
}

func (e *Embedded) flusher() {
	defer e.done.Done()
	t := time.NewTicker(FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
			if err := e.Flush(); err != nil {
				e.log.Error("quota: daily counters not saved; retrying", "err", err)
			}
		}
	}
}

// Flush writes the daily counters changed since the last flush.
func (e *Embedded) Flush() error {
	dirty := e.dirtyDaily()
	if len(dirty) == 0 {
		return nil
	}
	err := e.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucket)
		for k, n := range dirty {
			// bbolt keeps the slices until the commit: one each.
			v := binary.BigEndian.AppendUint64(nil, uint64(n))
			if err := b.Put([]byte(k.day+"/"+k.key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Mark them dirty again so that the next flush retries.
		for k, n := range dirty {
			s := e.shard(k.key)
			s.mu.Lock()
			if _, ok := s.daily[k]; !ok {
				s.daily[k] = n
			}
			s.dirty[k] = struct{}{}
			s.mu.Unlock()
		}
		return fmt.Errorf("flush daily counters: %w", err)
	}
	return nil
}

// Close stops the writer and flushes what is left. It does not close db.
func (e *Embedded) Close() error {
	e.once.Do(func() { close(e.stop) })
	e.done.Wait()
	return e.Flush()
}
