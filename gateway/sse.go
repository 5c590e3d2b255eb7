package gateway

import (
	"net/http"
	"sync"
	"time"

	"github.com/obol/obol/internal/apierr"
)

// sseWriter writes server-sent events, each whole and flushed at once. It
// commits the response headers lazily: a backend that fails before it
// answers still gets a proper status and JSON error; a slow one gets
// keep-alive comments (which commit a 200) so that clients and proxies do
// not time out before the first token.
type sseWriter struct {
	mu       sync.Mutex
	w        http.ResponseWriter
	rc       *http.ResponseController
	buf      []byte
	interval time.Duration
	ka       *time.Timer
	started  bool // headers committed
	held     bool // no more keep-alives: an event was sent, or the stream ended
	err      error
}

func newSSE(w http.ResponseWriter, keepAlive time.Duration) *sseWriter {
	s := &sseWriter{w: w, rc: http.NewResponseController(w), interval: keepAlive}
	s.mu.Lock() // the timer's goroutine reads s.ka under mu
	s.ka = time.AfterFunc(keepAlive, s.keepAlive)
	s.mu.Unlock()
	return s
}

func (s *sseWriter) keepAlive() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held || s.err != nil {
		return
	}
	s.writeLocked([]byte(": keep-alive\n\n"))
	s.ka.Reset(s.interval)
}

// start commits the SSE headers; mu is held.
func (s *sseWriter) start() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx and kin must not buffer the stream
	s.w.WriteHeader(http.StatusOK)
}

func (s *sseWriter) writeLocked(b []byte) error {
	if s.err != nil {
		return s.err
	}
	s.start()
	if _, err := s.w.Write(b); err != nil {
		s.err = err
		return err
	}
	s.err = s.rc.Flush()
	return s.err
}

// event writes one "data:" event and flushes it.
func (s *sseWriter) Event(data []byte) error {
	if err := s.Write(data); err != nil {
		return err
	}
	return s.Flush()
}

// write writes one whole "data:" event without flushing it: the relay
// flushes once it has written every event the backend has sent so far,
// so that a burst of events costs one write to the client, not one each.
func (s *sseWriter) Write(data []byte) error { return s.WriteNamed("", data) }

// writeNamed writes one whole event, named (an "event:" line) unless name
// is "", without flushing it.
func (s *sseWriter) WriteNamed(name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.held {
		s.held = true
		s.ka.Stop()
	}
	if s.err != nil {
		return s.err
	}
	s.start()
	s.buf = s.buf[:0]
	if name != "" {
		s.buf = append(append(append(s.buf, "event: "...), name...), '\n')
	}
	s.buf = append(s.buf, "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	}
	return s.err
}

// flush sends what was written; before anything was, it does nothing (a
// flush would commit the headers).
func (s *sseWriter) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil || !s.started {
		return s.err
	}
	s.err = s.rc.Flush()
	return s.err
}

// stop ends keep-alives and reports whether the headers were committed;
// after it, an uncommitted stream can still answer with a JSON error.
func (s *sseWriter) stop() (started bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held = true
	s.ka.Stop()
	return s.started
}

// fail ends a started stream with an error event and [DONE].
func (s *sseWriter) Fail(e *apierr.Error) {
	if s.Event(e.Body()) == nil {
		s.Event([]byte("[DONE]"))
	}
}
