package usage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/obol/obol/internal/metrictest"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/syncbuf"
)

// ledgerEnv is a Ledger with its log and metrics captured.
type ledgerEnv struct {
	*Ledger
	log    *syncbuf.Buffer
	reader *sdkmetric.ManualReader
}

func newLedger(t *testing.T, st Store, o Options) *ledgerEnv {
	t.Helper()
	e := &ledgerEnv{log: &syncbuf.Buffer{}, reader: sdkmetric.NewManualReader()}
	o.Log = slog.New(slog.NewJSONHandler(e.log, nil))
	o.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader)).Meter("test")
	if o.Retry == 0 {
		o.Retry = 10 * time.Millisecond
	}
	e.Ledger = NewLedger(st, o)
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// counter returns the sum of a counter over all its attribute sets.
func (e *ledgerEnv) counter(t *testing.T, name string) int64 {
	t.Helper()
	return metrictest.Sum(t, e.reader, name)
}

func rec(i int) Record {
	return Record{RequestID: fmt.Sprintf("chat_%04d", i), Key: "key_a", Model: []string{"hermes", "pluto"}[i%2],
		Time: nov, PromptTokens: int64(10 + i%7), CompletionTokens: int64(i % 13)}
}

// want sums records as the ledger should.
func want(recs ...Record) *Summary {
	s := newSummary("2026-11")
	for _, r := range recs {
		s.Add(r.Model, r.Time.UTC().Format("2006-01-02"), r.row())
	}
	return s
}

func checkSummary(t *testing.T, st Store, key string, w *Summary) {
	t.Helper()
	got, err := st.Summary(context.Background(), key, w.Period)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := json.Marshal(got)
	x, _ := json.Marshal(w)
	if string(g) != string(x) {
		t.Errorf("ledger\n got %s\nwant %s", g, x)
	}
}

func forEachStore(t *testing.T, f func(t *testing.T, st Store)) {
	forEachLedger(t, func(t *testing.T, l ledger) { f(t, l.(Store)) })
}

// TestLedgerWritesEverything: concurrent callers, every record twice;
// waiting on Record's channel means the record is in the store.
func TestLedgerWritesEverything(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		l := newLedger(t, st, Options{Batch: 7})
		var all []Record
		for i := 0; i < 300; i++ {
			all = append(all, rec(i))
		}
		var wg sync.WaitGroup
		for w := 0; w < 6; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w % 3; i < len(all); i += 3 {
					<-l.Record(all[i])
				}
			}()
		}
		wg.Wait()
		checkSummary(t, st, "key_a", want(all...))
		if n := l.counter(t, "obol.usage.records.delayed"); n != 0 {
			t.Errorf("%d records delayed with the store up", n)
		}
	})
}

// flaky stores the first write and then fails it, as a write whose reply
// timed out after the store ran it.
type flaky struct {
	Store
	fails atomic.Int32
}

func (f *flaky) Write(ctx context.Context, recs []Record) error {
	err := f.Store.Write(ctx, recs)
	if err == nil && f.fails.Add(-1) >= 0 {
		return errors.New("i/o timeout")
	}
	return err
}

// TestRetriedWriteCountsOnce: a write that succeeded but reported a
// failure is retried, and the request ids keep it from counting twice.
func TestRetriedWriteCountsOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		fl := &flaky{Store: st}
		fl.fails.Store(2)
		l := newLedger(t, fl, Options{})
		recs := []Record{rec(1), rec(2), rec(3)}
		for _, r := range recs {
			l.Record(r)
		}
		if err := l.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
		checkSummary(t, st, "key_a", want(recs...))
		if n := l.counter(t, "obol.usage.records.delayed"); n == 0 || n > 3 {
			t.Errorf("delayed = %d, want 1..3", n)
		}
		if n := strings.Count(l.log.String(), `"msg":"usage record delayed"`); int64(n) != l.counter(t, "obol.usage.records.delayed") {
			t.Errorf("%d delayed log lines for %d delayed records", n, l.counter(t, "obol.usage.records.delayed"))
		}
	})
}

// ownPostgres is a PostgreSQL server of the test's own, to stop and
// restart, and the ledger's store in it.
func ownPostgres(t *testing.T) (*pgtest.Server, *Postgres) {
	srv := pgtest.Start(t)
	return srv, NewPostgres(srv.Migrated(t), 35)
}

// TestStoreRestartDelaysRecords: records made while the store is down are
// queued, logged and counted, and all land once it is back.
func TestStoreRestartDelaysRecords(t *testing.T) {
	srv, st := ownPostgres(t)
	l := newLedger(t, st, Options{SpoolDir: t.TempDir()})
	var all []Record
	for i := 0; i < 50; i++ {
		all = append(all, rec(i))
		<-l.Record(all[i])
	}
	srv.Stop()
	for i := 50; i < 120; i++ {
		all = append(all, rec(i))
		<-l.Record(all[i]) // returns without waiting once the outage is known
	}
	srv.Restart()
	// The restarted store holds what it had, and then the records made
	// during the outage.
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := st.Summary(context.Background(), "key_a", "2026-11")
		if err == nil && s.ByModel["hermes"].Requests+s.ByModel["pluto"].Requests == 120 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("delayed records not written after the restart: %+v, %v", s, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	checkSummary(t, st, "key_a", want(all...))
	if n := l.counter(t, "obol.usage.records.delayed"); n != 70 {
		t.Errorf("delayed = %d, want 70", n)
	}
	logs := l.log.String()
	if n := strings.Count(logs, `"msg":"usage record delayed"`); n != 70 {
		t.Errorf("%d delayed log lines, want 70", n)
	}
	for _, msg := range []string{"usage ledger store unavailable", "usage ledger store answering again"} {
		if strings.Count(logs, msg) != 1 {
			t.Errorf("%q logged %d times, want once", msg, strings.Count(logs, msg))
		}
	}
	if !strings.Contains(logs, `"request_id":"chat_0077"`) {
		t.Error("a delayed record's request id is not in the log")
	}
}

// TestSpoolAtCloseReplayedAtStart: what the store cannot take before
// Close is spooled, and the next ledger on the same directory writes it.
func TestSpoolAtCloseReplayedAtStart(t *testing.T) {
	srv, st := ownPostgres(t)
	dir := t.TempDir()
	l := newLedger(t, st, Options{SpoolDir: dir})
	srv.Stop()
	var all []Record
	for i := 0; i < 40; i++ {
		all = append(all, rec(i))
		l.Record(all[i])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A record after Close is spooled at once.
	all = append(all, rec(40))
	<-l.Record(all[40])
	if n := l.counter(t, "obol.usage.records.spooled"); n != 41 {
		t.Errorf("spooled = %d, want 41", n)
	}
	if n := strings.Count(l.log.String(), `"msg":"usage record spooled"`); n != 41 {
		t.Errorf("%d spooled log lines, want 41", n)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "usage-*.jsonl"))
	lines := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines += strings.Count(string(b), "\n")
	}
	if lines != 41 {
		t.Fatalf("spool files %v hold %d lines, want 41", files, lines)
	}

	srv.Restart()
	l2 := newLedger(t, st, Options{SpoolDir: dir})
	waitReplayed(t, l2, 41)
	checkSummary(t, st, "key_a", want(all...))
	if files, _ := filepath.Glob(filepath.Join(dir, "*")); len(files) != 0 {
		t.Errorf("spool files left after the replay: %v", files)
	}
}

func waitReplayed(t *testing.T, l *ledgerEnv, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for l.counter(t, "obol.usage.records.replayed") != n {
		if time.Now().After(deadline) {
			t.Fatalf("replayed %d records, want %d; log:\n%s", l.counter(t, "obol.usage.records.replayed"), n, l.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueOverflowSpools: past Capacity, records go straight to the
// spool, and come back from it once the store answers.
func TestQueueOverflowSpools(t *testing.T) {
	srv, st := ownPostgres(t)
	srv.Stop()
	l := newLedger(t, st, Options{SpoolDir: t.TempDir(), Capacity: 5})
	var all []Record
	for i := 0; i < 12; i++ {
		all = append(all, rec(i))
		l.Record(all[i])
	}
	if n := l.counter(t, "obol.usage.records.spooled"); n != 7 {
		t.Errorf("spooled = %d, want the 7 past capacity", n)
	}
	srv.Restart()
	waitReplayed(t, l, 7)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, st, "key_a", want(all...))
}

// TestSpoolSkipsLockedAndBrokenFiles: a spool file another process holds
// is left alone; a line cut short by a crash is skipped and logged.
func TestSpoolSkipsLockedAndBrokenFiles(t *testing.T) {
	forEachStore(t, func(t *testing.T, st Store) {
		dir := t.TempDir()
		held := &spool{dir: dir}
		if err := held.append([]Record{rec(1)}); err != nil {
			t.Fatal(err)
		}
		defer held.close()
		broken := filepath.Join(dir, "usage-1-1.jsonl")
		line := `{"request_id":"chat_0002","key_id":"key_a","model":"hermes","time":"2026-11-15T12:00:00Z","prompt_tokens":12,"completion_tokens":2}`
		if err := os.WriteFile(broken, []byte(line+"\n"+`{"request_id":"chat_00`), 0o600); err != nil {
			t.Fatal(err)
		}
		l := newLedger(t, st, Options{SpoolDir: dir})
		waitReplayed(t, l, 1)
		checkSummary(t, st, "key_a", want(rec(2)))
		if !strings.Contains(l.log.String(), "unreadable line skipped") {
			t.Error("the cut line was not logged")
		}
		if _, err := os.Stat(held.path()); err != nil {
			t.Errorf("the held spool file was touched: %v", err)
		}
	})
}

// TestNoSpoolLogsWholeRecord: without a spool directory, a record that
// cannot be stored is logged whole at error level and counted as lost.
func TestNoSpoolLogsWholeRecord(t *testing.T) {
	srv, st := ownPostgres(t)
	srv.Stop()
	l := newLedger(t, st, Options{})
	l.Record(rec(9))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	l.Close(ctx)
	if n := l.counter(t, "obol.usage.records.lost"); n != 1 {
		t.Errorf("lost = %d, want 1", n)
	}
	logs := l.log.String()
	if !strings.Contains(logs, `"level":"ERROR","msg":"usage record NOT stored`) || !strings.Contains(logs, `"request_id":"chat_0009"`) ||
		!strings.Contains(logs, `"prompt_tokens":12`) {
		t.Errorf("the lost record is not logged whole:\n%s", logs)
	}
}

// TestTimedOutWriteCountsOnce: a write held up by a lock past its
// timeout is cancelled with its fate unknown to the ledger, which writes
// it again once the lock is gone: it counts once.
func TestTimedOutWriteCountsOnce(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	st := NewPostgres(pool, 35)
	l := newLedger(t, st, Options{Timeout: 150 * time.Millisecond})
	<-l.Record(rec(1))
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE usage_hourly IN EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	<-l.Record(rec(2)) // times out
	tx.Rollback(ctx)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkSummary(t, st, "key_a", want(rec(1), rec(2)))
	if n := l.counter(t, "obol.usage.records.delayed"); n != 1 {
		t.Errorf("delayed = %d, want the one that timed out", n)
	}
}
