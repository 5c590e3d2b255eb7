package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/models"
)

// Stream outcomes, as the access log reports them.
const (
	outcomeCompleted     = "completed"
	outcomeClientGone    = "client_gone"
	outcomeUpstreamError = "upstream_error"
	outcomeShutdown      = "shutdown" // cut by the end of the shutdown grace
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
func (s *sseWriter) event(data []byte) error {
	if err := s.write(data); err != nil {
		return err
	}
	return s.flush()
}

// write writes one whole "data:" event without flushing it: the relay
// flushes once it has written every event the backend has sent so far,
// so that a burst of events costs one write to the client, not one each.
func (s *sseWriter) write(data []byte) error {
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
	s.buf = append(s.buf[:0], "data: "...)
	s.buf = append(s.buf, data...)
	s.buf = append(s.buf, "\n\n"...)
	if _, err := s.w.Write(s.buf); err != nil {
		s.err = err
	}
	return s.err
}

// flush sends what was written; before anything was, it does nothing (a
// flush would commit the headers).
func (s *sseWriter) flush() error {
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
func (s *sseWriter) fail(e *Error) {
	if s.event(e.body()) == nil {
		s.event([]byte("[DONE]"))
	}
}

// compatChunk is an OpenAI chat.completion.chunk as clients of
// /v1/chat/completions get it: the backend's, with the gateway's id and
// the public model name, and usage only if the client asked for it.
type compatChunk struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint json.RawMessage `json:"system_fingerprint,omitempty"`
	Choices           json.RawMessage `json:"choices"`
	Usage             json.RawMessage `json:"usage,omitempty"`
}

// nativeChunk is DESIGN.md's native stream event: an OpenAI chunk plus the
// text increment as a top-level string.
type nativeChunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Choices json.RawMessage `json:"choices"`
	Delta   string          `json:"delta"`
	Usage   *Usage          `json:"usage,omitempty"`
}

var errStreamCut = errors.New("the backend's stream ended before [DONE]")

// stream relays a backend's SSE stream to the client, event by event.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *call, req *chatRequest, m *models.Model, native bool) error {
	c.stream = true
	s.metrics.streams.Add(r.Context(), 1)
	defer s.metrics.streams.Add(r.Context(), -1)
	sse := newSSE(w, s.keepAlive)
	defer sse.stop()
	sent := time.Now()
	resp, err := s.up.Send(r.Context(), m, req.upstreamBody(true), true)
	c.upstream = time.Since(sent)
	if err != nil {
		if !sse.stop() {
			return err // nothing sent yet: a proper status and JSON error
		}
		c.started = true
		c.outcome = outcomeUpstreamError
		sse.fail(asError(err, m.Name))
		return err
	}
	defer resp.Close()
	c.backend = resp.Backend.Name

	rl := &relay{c: c, req: req, model: m.Name, sse: sse, native: native, created: time.Now().Unix()}
	err = rl.run(upstreamTimer{resp.Body, &c.upstream})
	if err != nil && r.Context().Err() == nil && !errors.Is(err, errClientGone) && !sse.stop() {
		return err // failed before the first byte: still a proper status
	}
	c.started = true
	c.usage = rl.usage
	if c.usage == nil {
		c.usage, c.counted = &Usage{PromptTokens: req.PromptTokens, CompletionTokens: rl.counted}, true
		c.usage.TotalTokens = c.usage.PromptTokens + c.usage.CompletionTokens
	}
	switch {
	case err == nil:
		c.outcome = outcomeCompleted
		return nil
	case s.abort.Err() != nil:
		c.outcome = outcomeShutdown
		sse.fail(errShuttingDown)
		return errShuttingDown
	case r.Context().Err() != nil || errors.Is(err, errClientGone):
		c.outcome = outcomeClientGone
		return nil
	}
	c.outcome = outcomeUpstreamError
	e := asError(err, m.Name)
	if e.Code == "server_error" || e.Code == "bad_request" {
		// Whatever broke mid-stream was the backend's doing.
		e = &Error{Status: http.StatusBadGateway, Code: "upstream_error", Err: err,
			Message: "the backend for " + m.Name + " failed mid-stream"}
	}
	sse.fail(e)
	return e
}

var errClientGone = errors.New("client gone")

// relay turns backend events into client events.
type relay struct {
	c       *call
	req     *chatRequest
	model   string
	sse     *sseWriter
	native  bool
	created int64

	usage    *Usage // as the backend reported it
	usageRaw json.RawMessage
	counted  int          // content chunks relayed: the count where no usage comes
	final    *nativeChunk // native: the finish_reason event, held to carry usage
	ch       chunk.Chunk  // the event being relayed
	out      []byte
}

func (rl *relay) send(v any) error {
	var b []byte
	switch ev := v.(type) {
	case compatChunk:
		b = rl.appendCompat(ev)
	case *nativeChunk:
		if utf8.ValidString(ev.Delta) {
			b = rl.appendNative(ev)
		}
	}
	if b == nil {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	if err := rl.sse.write(b); err != nil {
		return errClientGone
	}
	return nil
}

// appendCompat encodes a chunk as json.Marshal would, without reflection
// or re-validating the backend's choices, which pass through as they came
// (already checked when the event was decoded).
func (rl *relay) appendCompat(ev compatChunk) []byte {
	b := rl.head(ev.ID, ev.Created, ev.Model)
	if len(ev.SystemFingerprint) > 0 {
		b = append(append(b, `,"system_fingerprint":`...), ev.SystemFingerprint...)
	}
	b = append(append(b, `,"choices":`...), ev.Choices...)
	if len(ev.Usage) > 0 {
		b = append(append(b, `,"usage":`...), ev.Usage...)
	}
	rl.out = append(b, '}')
	return rl.out
}

// appendNative encodes a native chunk, as appendCompat does.
func (rl *relay) appendNative(ev *nativeChunk) []byte {
	b := rl.head(ev.ID, ev.Created, ev.Model)
	b = append(append(b, `,"choices":`...), ev.Choices...)
	b = appendJSONString(append(b, `,"delta":`...), ev.Delta)
	if ev.Usage != nil {
		b = appendUsage(append(b, `,"usage":`...), ev.Usage)
	}
	rl.out = append(b, '}')
	return rl.out
}

// head starts a chunk: id, object, created and model. The id and the
// model are the gateway's own and need no escaping.
func (rl *relay) head(id string, created int64, model string) []byte {
	b := append(rl.out[:0], `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","object":"chat.completion.chunk","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":"`...)
	b = append(b, model...)
	return append(b, '"')
}

// appendJSONString appends s, valid UTF-8, as a JSON string, escaped as
// encoding/json escapes it.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	b = append(b, s[start:]...)
	// U+2028 and U+2029, which encoding/json escapes for JavaScript.
	if strings.ContainsAny(s, "\u2028\u2029") {
		b = []byte(strings.NewReplacer("\u2028", `\u2028`, "\u2029", `\u2029`).Replace(string(b)))
	}
	return append(b, '"')
}

func (rl *relay) run(body io.Reader) error {
	// A small buffer: lines longer than it are joined by readLine.
	er := eventReader{r: bufio.NewReaderSize(body, 4<<10)}
	finished := false // a finish_reason was seen
	for {
		// What was written goes out before waiting on the backend.
		if !er.complete() && rl.sse.flush() != nil {
			return errClientGone
		}
		data, err := er.next()
		if err != nil {
			if err == io.EOF && finished {
				break // a server that closes without [DONE] after finishing
			}
			if err == io.EOF {
				err = errStreamCut
			}
			return fmt.Errorf("read backend stream: %w", err)
		}
		if bytes.Equal(data, []byte("[DONE]")) {
			break
		}
		if err := chunk.Parse(data, &rl.ch); err != nil {
			return fmt.Errorf("backend stream event: %w", err)
		}
		ch := &rl.ch
		if ch.Error != nil {
			return fmt.Errorf("backend error event: %.300s", ch.Error)
		}
		if ch.Created != 0 {
			rl.created = ch.Created
		}
		if ch.Usage != nil {
			var u Usage
			if json.Unmarshal(ch.Usage, &u) == nil {
				rl.usage, rl.usageRaw = &u, append(rl.usageRaw[:0], ch.Usage...)
			}
		}
		if ch.NChoices == 0 {
			continue // the usage chunk: sent at the end, if wanted
		}
		delta := ch.Content
		if delta != "" {
			rl.counted++
			if rl.c.ttft == 0 {
				rl.c.ttft = time.Since(rl.c.start) // sent just below; a failed send ends the stream anyway
			}
		}
		fin := len(ch.Finish) > 0
		rl.c.finish = append(rl.c.finish, ch.Finish...)
		finished = finished || fin
		if rl.native {
			ev := &nativeChunk{ID: rl.c.id, Object: "chat.completion.chunk", Created: rl.created, Model: rl.model, Choices: ch.Choices, Delta: delta}
			if fin {
				if err := rl.flushFinal(); err != nil {
					return err
				}
				ev.Choices = bytes.Clone(ev.Choices) // held past the event's buffer
				rl.final = ev
				continue
			}
			if err := rl.send(ev); err != nil {
				return err
			}
			continue
		}
		ev := compatChunk{ID: rl.c.id, Object: "chat.completion.chunk", Created: rl.created, Model: rl.model,
			SystemFingerprint: ch.SystemFingerprint, Choices: ch.Choices}
		if rl.req.IncludeUsage {
			ev.Usage = json.RawMessage("null")
		}
		if err := rl.send(ev); err != nil {
			return err
		}
	}
	return rl.finish()
}

// flushFinal sends a held native finish event without usage.
func (rl *relay) flushFinal() error {
	if rl.final == nil {
		return nil
	}
	ev := rl.final
	rl.final = nil
	return rl.send(ev)
}

// finish sends what ends a stream that completed: the native final event
// with usage, or OpenAI's usage chunk if the client asked; then [DONE].
func (rl *relay) finish() error {
	u := rl.usage
	if u == nil {
		u = &Usage{PromptTokens: rl.req.PromptTokens, CompletionTokens: rl.counted}
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	if rl.native {
		ev := rl.final
		if ev == nil {
			ev = &nativeChunk{ID: rl.c.id, Object: "chat.completion.chunk", Created: rl.created, Model: rl.model,
				Choices: json.RawMessage(`[{"index":0,"delta":{},"finish_reason":"stop"}]`)}
		}
		rl.final = nil
		ev.Usage = u
		if err := rl.send(ev); err != nil {
			return err
		}
	} else if rl.req.IncludeUsage {
		raw := rl.usageRaw
		if raw == nil {
			raw = appendUsage(nil, u)
		}
		if err := rl.send(compatChunk{ID: rl.c.id, Object: "chat.completion.chunk", Created: rl.created,
			Model: rl.model, Choices: json.RawMessage("[]"), Usage: raw}); err != nil {
			return err
		}
	}
	if rl.sse.event([]byte("[DONE]")) != nil { // written and flushed
		return errClientGone
	}
	return nil
}

// eventReader reads the data of server-sent events.
type eventReader struct {
	r    *bufio.Reader
	data []byte
	line []byte
}

// next returns the data of the next event with data; its bytes are valid
// until the next call.
func (er *eventReader) next() ([]byte, error) {
	er.data = er.data[:0]
	has := false
	for {
		line, err := er.readLine()
		if err != nil {
			if err == io.EOF && has {
				return er.data, nil
			}
			return nil, err
		}
		if len(line) == 0 {
			if has {
				return er.data, nil
			}
			continue
		}
		if line[0] == ':' {
			continue // a comment
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
		if string(field) == "data" {
			if has {
				er.data = append(er.data, '\n')
			}
			er.data = append(er.data, value...)
			has = true
		}
	}
}

// complete reports whether a whole event is already buffered, so that
// reading it will not wait on the backend.
func (er *eventReader) complete() bool {
	n := er.r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := er.r.Peek(n)
	return bytes.Contains(b, []byte("\n\n")) || bytes.Contains(b, []byte("\r\n\r\n"))
}

// readLine returns one line without its end of line (LF or CRLF).
func (er *eventReader) readLine() ([]byte, error) {
	line, err := er.r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		er.line = append(er.line[:0], line...)
		for err == bufio.ErrBufferFull {
			line, err = er.r.ReadSlice('\n')
			er.line = append(er.line, line...)
		}
		line = er.line
	}
	if err != nil {
		if err == io.EOF && len(line) > 0 {
			return bytes.TrimRight(line, "\r\n"), nil
		}
		return nil, err
	}
	return bytes.TrimRight(line, "\r\n"), nil
}
