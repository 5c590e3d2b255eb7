package usage

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/obol/obol/internal/clip"
)

// spool is a directory of JSON-lines files of records that the store did
// not take. Each process appends to a file of its own, holding an
// exclusive lock on it while it is open; a replayer takes only files it
// can lock, so that it never reads a file still being written. Replaying
// twice is harmless: the store adds each request id once.
type spool struct {
	dir  string
	mu   sync.Mutex
	f    *os.File
	name string
}

// replayChunk bounds the records held in memory while replaying.
const replayChunk = 10_000

func (s *spool) path() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.name != "" {
		return s.name
	}
	return s.dir
}

// append writes recs and syncs them to disk.
func (s *spool) append(recs []Record) error {
	if s.dir == "" {
		return errors.New("no spool directory is configured")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		if err := s.openLocked(); err != nil {
			return err
		}
	}
	var b []byte
	for _, rec := range recs {
		line, err := json.Marshal(rec)
		if err != nil {
			return fmt.Errorf("spool %s: %w", rec.RequestID, err)
		}
		b = append(append(b, line...), '\n')
	}
	if _, err := s.f.Write(b); err != nil {
		return fmt.Errorf("spool %s: %w", s.name, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("spool %s: %w", s.name, err)
	}
	return nil
}

// openLocked creates this process's spool file. It is created under a
// name no replayer looks at, locked, and only then given its real name,
// so that no replayer can take it before it is locked.
func (s *spool) openLocked() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	base := "usage-" + strconv.FormatInt(time.Now().UnixNano(), 10) + "-" + strconv.Itoa(os.Getpid())
	tmp := filepath.Join(s.dir, "."+base+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	if err := tryLock(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("spool lock: %w", err)
	}
	name := filepath.Join(s.dir, base+".jsonl")
	if err := os.Rename(tmp, name); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("spool: %w", err)
	}
	s.f, s.name = f, name
	return nil
}

func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *spool) closeLocked() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close() // releases the lock
	s.f, s.name = nil, ""
	if err != nil {
		return fmt.Errorf("close spool: %w", err)
	}
	return nil
}

// replay passes the records of every spool file it can lock to write, a
// chunk at a time, and deletes each file once all of it is written. It
// reports how many records it passed on.
func (s *spool) replay(write func([]Record) error, log *slog.Logger) (int, error) {
	if s.dir == "" {
		return 0, nil
	}
	// This process's own file is closed first, so that it is replayed too;
	// later spills start a new one.
	if err := s.close(); err != nil {
		return 0, err
	}
	names, err := filepath.Glob(filepath.Join(s.dir, "usage-*.jsonl"))
	if err != nil {
		return 0, err
	}
	total := 0
	for _, name := range names {
		n, err := replayFile(name, write, log)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func replayFile(name string, write func([]Record) error, log *slog.Logger) (int, error) {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil // another replayer finished it
	}
	if err != nil {
		return 0, fmt.Errorf("spool %s: %w", name, err)
	}
	defer f.Close()
	if tryLock(f) != nil {
		return 0, nil // being written or replayed by another process
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	total := 0
	var recs []Record
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		if err := write(recs); err != nil {
			return fmt.Errorf("spool %s: %w", name, err)
		}
		total += len(recs)
		recs = recs[:0]
		return nil
	}
	for line := 1; sc.Scan(); line++ {
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.RequestID == "" {
			// A line cut short by a crash; it was never acknowledged.
			log.Error("usage spool: unreadable line skipped", "file", name, "line", line, "text", clip.String(sc.Text(), 300))
			continue
		}
		recs = append(recs, rec)
		if len(recs) == replayChunk {
			if err := flush(); err != nil {
				return total, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return total, fmt.Errorf("spool %s: %w", name, err)
	}
	if err := flush(); err != nil {
		return total, err
	}
	if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return total, fmt.Errorf("spool %s: %w", name, err)
	}
	return total, nil
}

// spill writes records to the spool; failing that, it logs them whole so
// that they can still be recovered from the log.
func (l *Ledger) spill(ps []pending, why string) {
	if len(ps) == 0 {
		return
	}
	recs := make([]Record, len(ps))
	for i, p := range ps {
		recs[i] = p.rec
	}
	err := l.spool.append(recs)
	if err == nil {
		l.spilled.Store(true)
		l.spooled.Add(context.Background(), int64(len(recs)))
		for _, rec := range recs {
			l.opt.Log.LogAttrs(context.Background(), slog.LevelWarn, "usage record spooled",
				append(recordAttrs(rec), slog.String("reason", why), slog.String("spool", l.spool.path()))...)
		}
		return
	}
	l.lost.Add(context.Background(), int64(len(recs)))
	for _, rec := range recs {
		l.opt.Log.LogAttrs(context.Background(), slog.LevelError, "usage record NOT stored: neither the ledger nor the spool took it",
			append(recordAttrs(rec), slog.String("reason", why), slog.String("err", err.Error()))...)
	}
}

// replay writes every spool file no other process holds into the store,
// deleting each once it is written.
func (l *Ledger) replay(base context.Context) error {
	n, err := l.spool.replay(func(recs []Record) error {
		for i := 0; i < len(recs); i += l.opt.Batch {
			ctx, cancel := context.WithTimeout(base, l.opt.Timeout)
			err := l.store.Write(ctx, recs[i:min(i+l.opt.Batch, len(recs))])
			cancel()
			if err != nil {
				return err
			}
		}
		return nil
	}, l.opt.Log)
	if n > 0 {
		l.replayed.Add(context.Background(), int64(n))
		l.opt.Log.Info("usage records replayed from the spool", "records", n)
	}
	if err != nil {
		return fmt.Errorf("replay spool: %w", err)
	}
	l.spilled.Store(false)
	return nil
}
