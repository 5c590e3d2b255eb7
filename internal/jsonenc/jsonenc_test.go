package jsonenc

import (
	"encoding/json"
	"testing"
)

// FuzzAppendString: the hand-written string encoder of the stream
// relay writes what encoding/json writes, for any string (invalid UTF-8
// as U+FFFD).
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "hello", "a\"b\\c", "line\nbreak\ttab\r\b\f", "<tag>&", "\x01\x1f\x7f", "é ü 日本 🎉", "\u2028x\u2029", "bad \xff\xc3 end"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendString(nil, s); string(got) != string(want) {
			t.Errorf("jsonenc.AppendString(%q) = %s, want %s", s, got, want)
		}
	})
}
