package gateway

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzAppendJSONString: the hand-written string encoder of the stream
// relay writes what encoding/json writes, for any valid UTF-8.
func FuzzAppendJSONString(f *testing.F) {
	for _, s := range []string{"", "hello", "a\"b\\c", "line\nbreak\ttab\r", "<tag>&", "\x01\x1f\x7f", "é ü 日本 🎉", "\u2028x\u2029"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) {
			return
		}
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("appendJSONString(%q) = %s, want %s", s, got, want)
		}
	})
}

// TestChunkEncoding: the hand-written chunks are what json.Marshal makes
// of the same structs.
func TestChunkEncoding(t *testing.T) {
	rl := &relay{}
	choices := json.RawMessage(`[{"index":0,"delta":{"content":"Hi \"there\""},"finish_reason":null}]`)
	compat := compatChunk{ID: "chat_01X", Object: "chat.completion.chunk", Created: 1738857600, Model: "hermes",
		SystemFingerprint: json.RawMessage(`"fp_1"`), Choices: choices, Usage: json.RawMessage("null")}
	native := &nativeChunk{ID: "chat_01X", Object: "chat.completion.chunk", Created: 1738857600, Model: "pluto",
		Choices: choices, Delta: "Hi \"there\"\n<b>"}
	for _, tt := range []struct {
		got  []byte
		want any
	}{{append([]byte(nil), rl.appendCompat(compat)...), compat}, {append([]byte(nil), rl.appendNative(native)...), native}} {
		want, _ := json.Marshal(tt.want)
		if string(tt.got) != string(want) {
			t.Errorf("\n got %s\nwant %s", tt.got, want)
		}
	}
}

// TestEventReaderLongLines: an event longer than the relay's buffer is
// read whole.
func TestEventReaderLongLines(t *testing.T) {
	long := strings.Repeat("x", 10_000)
	src := "data: {\"a\":\"" + long + "\"}\r\n\r\n: comment\n\ndata: [DONE]\n\n"
	er := eventReader{r: bufio.NewReaderSize(strings.NewReader(src), 4<<10)}
	first, err := er.next()
	if err != nil || string(first) != `{"a":"`+long+`"}` {
		t.Fatalf("first event: %d bytes, %v", len(first), err)
	}
	if done, err := er.next(); err != nil || string(done) != "[DONE]" {
		t.Errorf("second event %q, %v", done, err)
	}
}
