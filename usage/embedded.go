package usage

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/obol/obol/money"
	bolt "go.etcd.io/bbolt"
)

var (
	// daysBucket: "YYYY-MM/key/model[#kind][@project]/DD" → prompt, cached
	// prompt, completion, reasoning, requests, cost in picodollars (6 ×
	// uint64): a row per key, model, kind, project and UTC day, a key's
	// month under one prefix.
	daysBucket = []byte("usage_days")
	reqsBucket = []byte("usage_reqs") // a bucket per UTC day of request: request id → nothing
	// oldRowsBucket held monthly rows ("YYYY-MM/key/model" → prompt,
	// completion, requests) before daily ones; Open moves them to the
	// first of their month.
	oldRowsBucket = []byte("usage_rows")
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
	// The request log's bounds (embedded_requests.go), and the entries
	// written since its size was last checked.
	logDays, logMax, logged atomic.Int64
}

// OpenEmbedded prepares the ledger's buckets in db and forgets request ids
// older than the idempotency window.
func OpenEmbedded(db *bolt.DB) (*Embedded, error) {
	e := &Embedded{db: db}
	e.KeepRequests(DefaultRequestLogDays, DefaultRequestLogEntries)
	err := db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(daysBucket); err != nil {
			return err
		}
		if err := moveMonthlyRows(tx); err != nil {
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

// recordTTL is how long the embedded store remembers a request id against
// a second write: far longer than a retry, or a restart that replays the
// spool, takes.
const recordTTL = 24 * time.Hour

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
	if err := e.pruneLog(tx, now, true); err != nil {
		return err
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
			added, err := add(tx, rec)
			if err == nil && added {
				err = e.logRecord(tx, rec)
			}
			if err != nil {
				return err
			}
		}
		return e.pruneLog(tx, time.Now(), false)
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
	if rec.LogOnly {
		return true, nil // the request log's alone
	}
	rows := tx.Bucket(daysBucket)
	k := []byte(rec.Period() + "/" + rec.Key + "/" + modelKind(rec.Model, rec.kind(), rec.Project) + "/" + rec.Time.UTC().Format("02"))
	row := decodeRow(rows.Get(k))
	row.AddRow(rec.row())
	return true, rows.Put(k, encodeRow(row))
}

// Summary is key's ledger for a month.
func (e *Embedded) Summary(_ context.Context, key, period string) (*Summary, error) {
	s := newSummary(period)
	prefix := []byte(period + "/" + key + "/")
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(daysBucket).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if k2, mk, day, ok := splitDayKey(k[len(period)+1:]); ok && k2 == key {
				model, _, _ := splitModelKind(mk)
				s.Add(model, period+"-"+day, decodeRow(v))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage of %s in %s: %w", key, period, err)
	}
	return s, nil
}

// modelKind is a row key's model part: the model, for embeddings
// "#embeddings" after it, and for a key of a project "@" and the project
// (model names and project ids have neither "#" nor "@").
func modelKind(model, kind, project string) string {
	if kind == KindEmbeddings {
		model += "#" + kind
	}
	if project != "" {
		model += "@" + project
	}
	return model
}

func splitModelKind(s string) (model, kind, project string) {
	s, project, _ = strings.Cut(s, "@")
	if m, k, ok := strings.Cut(s, "#"); ok {
		return m, k, project
	}
	return s, KindCompletions, project
}

// splitDayKey reads "key/model/DD" (model names and days have no "/";
// key ids might).
func splitDayKey(rest []byte) (key, model, day string, ok bool) {
	i := bytes.LastIndexByte(rest, '/')
	if i < 0 {
		return "", "", "", false
	}
	j := bytes.LastIndexByte(rest[:i], '/')
	if j < 0 {
		return "", "", "", false
	}
	return string(rest[:j]), string(rest[j+1 : i]), string(rest[i+1:]), true
}

// moveMonthlyRows moves the rows of a ledger written before daily rows to
// the first day of their month, once.
func moveMonthlyRows(tx *bolt.Tx) error {
	old := tx.Bucket(oldRowsBucket)
	if old == nil {
		return nil
	}
	days := tx.Bucket(daysBucket)
	err := old.ForEach(func(k, v []byte) error {
		if len(v) != 24 {
			return nil
		}
		r := Row{Prompt: int64(binary.BigEndian.Uint64(v[0:])), Completion: int64(binary.BigEndian.Uint64(v[8:])),
			Requests: int64(binary.BigEndian.Uint64(v[16:]))}
		dk := append(bytes.Clone(k), "/01"...)
		cur := decodeRow(days.Get(dk))
		cur.AddRow(r)
		return days.Put(dk, encodeRow(cur))
	})
	if err != nil {
		return err
	}
	return tx.DeleteBucket(oldRowsBucket)
}

func encodeRow(r Row) []byte {
	b := make([]byte, 0, 64)
	for _, v := range []int64{r.Prompt, r.CachedPrompt, r.Completion, r.Reasoning, r.Requests, int64(r.Cost), r.CacheWrite5m, r.CacheWrite1h} {
		b = binary.BigEndian.AppendUint64(b, uint64(v))
	}
	return b
}

// decodeRow reads a row: eight numbers, or the six of a row written
// before cache writes (none), or the five of one written before costs
// (cost 0).
func decodeRow(b []byte) Row {
	if len(b) != 40 && len(b) != 48 && len(b) != 64 {
		return Row{}
	}
	v := func(i int) int64 { return int64(binary.BigEndian.Uint64(b[8*i:])) }
	r := Row{Prompt: v(0), CachedPrompt: v(1), Completion: v(2), Reasoning: v(3), Requests: v(4)}
	if len(b) >= 48 {
		r.Cost = money.Money(v(5))
	}
	if len(b) == 64 {
		r.CacheWrite5m, r.CacheWrite1h = v(6), v(7)
	}
	return r
}

// Buckets reads usage by UTC day, the finest the embedded store keeps.
func (e *Embedded) Buckets(_ context.Context, q BucketQuery) ([]BucketRow, error) {
	if q.Hourly {
		return nil, ErrGrain
	}
	var out []BucketRow
	err := e.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(daysBucket).Cursor()
		for m := monthStart(q.Start); m.Before(q.End); m = m.AddDate(0, 1, 0) {
			prefix := []byte(m.Format("2006-01") + "/")
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				key, mk, day, ok := splitDayKey(k[len(prefix):])
				if !ok {
					continue
				}
				model, kind, project := splitModelKind(mk)
				d, err := time.Parse("2006-01-02", m.Format("2006-01")+"-"+day)
				if err != nil || d.Before(q.Start) || !d.Before(q.End) || !q.selects(key, model, kind, project) {
					continue
				}
				out = append(out, q.row(d, key, model, kind, project, decodeRow(v)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("usage buckets: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out, nil
}

// selects reports whether the query wants a row.
func (q *BucketQuery) selects(key, model, kind, project string) bool {
	return (q.Kind == "" || kind == q.Kind) && (len(q.Keys) == 0 || slices.Contains(q.Keys, key)) &&
		(len(q.Models) == 0 || slices.Contains(q.Models, model)) && (len(q.Projects) == 0 || slices.Contains(q.Projects, project))
}

// row is a stored row as the query asks for it: summed over what it does
// not keep apart.
func (q *BucketQuery) row(start time.Time, key, model, kind, project string, r Row) BucketRow {
	if !q.ByKey {
		key = ""
	}
	if !q.ByModel {
		model = ""
	}
	if !q.ByProject {
		project = ""
	}
	return BucketRow{Start: start, Key: key, Model: model, Project: project, Kind: kind, Row: r}
}

func monthStart(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}
