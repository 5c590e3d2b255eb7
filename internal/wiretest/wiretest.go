// Package wiretest holds what the wire packages' golden transcripts share:
// a sink that records what a translation writes as the SSE writer would
// send it, a backend stream read from its bytes, and the golden files.
package wiretest

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/obol/obol/internal/apierr"
)

// Sink collects what a translation writes, as the SSE writer would send
// it; Fail writes the OpenAI error event and [DONE].
type Sink struct{ Out bytes.Buffer }

func (s *Sink) Write(data []byte) error { return s.WriteNamed("", data) }

func (s *Sink) WriteNamed(name string, data []byte) error {
	if name != "" {
		s.Out.WriteString("event: " + name + "\n")
	}
	s.Out.WriteString("data: ")
	s.Out.Write(data)
	s.Out.WriteString("\n\n")
	return nil
}

func (s *Sink) Flush() error            { return nil }
func (s *Sink) Event(data []byte) error { return s.Write(data) }
func (s *Sink) Fail(e *apierr.Error)    { s.Write(e.Body()); s.Write([]byte("[DONE]")) }

// Events are a backend stream's data events, read from its bytes.
type Events struct{ data [][]byte }

// EventsOf reads raw, an SSE stream, into its data events.
func EventsOf(raw []byte) *Events {
	var ev Events
	for _, block := range strings.Split(string(raw), "\n\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(block), "data: "); ok {
			ev.data = append(ev.data, []byte(d))
		}
	}
	return &ev
}

func (e *Events) Next() ([]byte, error) {
	if len(e.data) == 0 {
		return nil, io.EOF
	}
	d := e.data[0]
	e.data = e.data[1:]
	return d, nil
}

func (e *Events) Complete() bool { return false }

// stamps are what differs from run to run: a Responses object's time.
var stamps = regexp.MustCompile(`"created_at":\d+`)

// Golden compares got with testdata/golden/name, or writes it there when
// update is set.
func Golden(t *testing.T, update bool, name string, got []byte) {
	t.Helper()
	got = stamps.ReplaceAll(got, []byte(`"created_at":0`))
	path := filepath.Join("testdata", "golden", name)
	if update {
		os.MkdirAll(filepath.Dir(path), 0o755)
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test -run Golden -update writes it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden transcript:\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
