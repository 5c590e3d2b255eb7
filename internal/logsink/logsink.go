// Package logsink gathers log lines in memory and writes them out in one
// write every interval, when a batch fills, and at Close: a write(2) per
// access-log line would cost a request more than the line itself. A
// clean stop loses nothing; a kill -9 loses at most one interval.
package logsink

import (
	"io"
	"sync"
	"time"
)

// batch is how much is gathered before it is written without waiting for
// the interval.
const batch = 64 << 10

// Sink is an io.Writer for log lines, safe for concurrent use; each Write
// is kept whole.
type Sink struct {
	w    io.Writer
	mu   sync.Mutex // guards buf
	buf  []byte
	wmu  sync.Mutex // one write to w at a time, in order
	out  []byte     // the batch being written, reused
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// New writes to w every interval (and whenever a batch fills) until Close.
func New(w io.Writer, interval time.Duration) *Sink {
	s := &Sink{w: w, buf: make([]byte, 0, batch), out: make([]byte, 0, batch), stop: make(chan struct{}), done: make(chan struct{})}
	go s.flusher(interval)
	return s
}

// Write gathers p; it writes the batch when it is full.
func (s *Sink) Write(p []byte) (int, error) {
	s.mu.Lock()
	s.buf = append(s.buf, p...)
	full := len(s.buf) >= batch
	s.mu.Unlock()
	if full {
		if err := s.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what is gathered.
func (s *Sink) Flush() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.mu.Lock()
	s.buf, s.out = s.out[:0], s.buf
	s.mu.Unlock()
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.w.Write(s.out)
	if cap(s.out) > 16*batch {
		s.out = make([]byte, 0, batch) // a burst's buffer is not kept
	}
	return err
}

func (s *Sink) flusher(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Flush()
		case <-s.stop:
			return
		}
	}
}

// Close stops the timer and writes what is left; writes after it are
// still gathered and written by the next Flush.
func (s *Sink) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	return s.Flush()
}
