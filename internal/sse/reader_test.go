package sse

import (
	"io"
	"strings"
	"testing"
)

// TestEventReaderLongLines: an event longer than the relay's buffer is
// read whole.
func TestEventReaderLongLines(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	src := "data: {\"a\":\"" + long + "\"}\r\n\r\n: comment\n\ndata: [DONE]\n\n"
	er := NewReader(strings.NewReader(src), 4<<10)
	first, err := er.Next()
	if err != nil || string(first) != `{"a":"`+long+`"}` {
		t.Fatalf("first event: %d bytes, %v", len(first), err)
	}
	if done, err := er.Next(); err != nil || string(done) != "[DONE]" {
		t.Errorf("second event %q, %v", done, err)
	}
}

// TestEOF: an event cut by the end of the input is returned, and EOF
// tells it apart from one ended by a blank line.
func TestEOF(t *testing.T) {
	er := NewReader(strings.NewReader("data: a\n\ndata: b\ndata: c"), 16)
	if d, err := er.Next(); string(d) != "a" || err != nil || er.EOF() {
		t.Fatalf("first: %q, %v, eof %v", d, err, er.EOF())
	}
	if d, err := er.Next(); string(d) != "b\nc" || err != nil || !er.EOF() {
		t.Fatalf("second: %q, %v, eof %v", d, err, er.EOF())
	}
	if _, err := er.Next(); err != io.EOF {
		t.Fatalf("after the end: %v", err)
	}
}
