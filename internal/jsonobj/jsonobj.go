// Package jsonobj reads the members of JSON objects the way a gateway
// must: in one pass where they are plain, through encoding/json where
// they are not (so the answers are encoding/json's), and with a check
// that no member's name folds to a known field's without being it — Go's
// encoding/json matches names regardless of case (Unicode simple
// folding: "max_tokenſ" is max_tokens), so a Go backend would read such a
// member as the field while obol, and a backend that matches exactly,
// read the field itself.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/clip"
)

// Members splits a JSON object into its members' raw values, which
// share body's bytes: in one pass where the object is plain, else (names
// with escapes, invalid JSON, not an object) through encoding/json, which
// words the error.
func Members(body []byte) (map[string]json.RawMessage, error) {
	f := make(map[string]json.RawMessage, 8)
	if chunk.Fields(body, func(name, value []byte) bool {
		f[string(name)] = value
		return utf8.Valid(name)
	}) {
		return f, nil
	}
	f = nil
	err := json.Unmarshal(body, &f)
	return f, err
}

// String decodes a JSON string, at once where it holds no escape.
func String(raw []byte) (string, error) {
	if s, ok := chunk.String(raw); ok {
		return s, nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// Elements splits a JSON array into its elements' raw values, in one
// pass, or through encoding/json where that walk bails.
func Elements(raw []byte) ([]json.RawMessage, bool) {
	out := make([]json.RawMessage, 0, 4)
	if chunk.Elements(raw, func(v []byte) bool { out = append(out, v); return true }) {
		return out, true
	}
	out = nil
	return out, json.Unmarshal(raw, &out) == nil
}

// Names is the set of an API object's member names, looked up
// exactly and as encoding/json folds them.
type Names struct {
	exact  map[string]bool
	folded map[string]string // fold(name) → name
}

func NewNames(names ...string) *Names {
	f := &Names{exact: map[string]bool{}, folded: map[string]string{}}
	for _, n := range names {
		f.exact[n] = true
		f.folded[Fold(n)] = n
	}
	return f
}

// check refuses name if it is not one of f but folds to one; where is the
// object's path in an error ("" for the body, "messages[2]", …).
func (f *Names) Check(where, name string) error {
	if f.Has(name) {
		return nil
	}
	known, ok := f.folded[Fold(name)]
	if !ok {
		return nil
	}
	param := name
	if where != "" {
		param = where + "." + name
	}
	return apierr.BadRequest(param, fmt.Sprintf("unknown parameter %q: it differs from %s only in case (as JSON decoders that ignore case read it); send %s exactly",
		clip.String(param, 80), known, known))
}

// CheckObject refuses the object's member that folds to one of f (the
// first by name, where several do).
func (f *Names) CheckObject(where string, fields map[string]json.RawMessage) error {
	var bad string
	for n := range fields {
		if !f.Has(n) && f.Check(where, n) != nil && (bad == "" || n < bad) {
			bad = n
		}
	}
	if bad == "" {
		return nil
	}
	return f.Check(where, bad)
}

// CheckRaw is CheckObject of a raw JSON object, read in one pass where
// its names are plain (no map is made); not an object is no error here.
func (f *Names) CheckRaw(where string, raw []byte) error {
	var bad []byte
	if chunk.Fields(raw, func(name, _ []byte) bool {
		if !f.Has(string(name)) && f.Check("", string(name)) != nil {
			bad = name
		}
		return bad == nil
	}) {
		return nil
	}
	if bad != nil {
		return f.Check(where, string(bad))
	}
	fields, _ := Members(raw)
	return f.CheckObject(where, fields)
}

// Fold is encoding/json's: ASCII letters upper-cased, every other rune
// the smallest of its simple-folding orbit, so that Fold(a) ==
// Fold(b) exactly when bytes.EqualFold(a, b).
func Fold(s string) string {
	var b []byte
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if 'a' <= c && c <= 'z' {
				c -= 'a' - 'A'
			}
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		b = utf8.AppendRune(b, foldRune(r))
		i += n
	}
	return string(b)
}

func foldRune(r rune) rune {
	for {
		r2 := unicode.SimpleFold(r)
		if r2 <= r {
			return r2
		}
		r = r2
	}
}

// structNames are the JSON member names of a struct type's fields, made
// once per type: the admin API's bodies are decoded into structs by
// encoding/json, which would take {"tieR": …} for tier.
var structNames sync.Map // reflect.Type → *Names

// ExactNames refuses a member of the object raw (at where, "" for the
// body) whose name folds to one of dst's (a pointer to a struct) fields
// without being it.
func ExactNames(where string, raw []byte, dst any) error {
	t := reflect.TypeOf(dst).Elem()
	f, ok := structNames.Load(t)
	if !ok {
		var names []string
		for i := range t.NumField() {
			if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n != "" && n != "-" {
				names = append(names, n)
			}
		}
		f, _ = structNames.LoadOrStore(t, NewNames(names...))
	}
	return f.(*Names).CheckRaw(where, raw)
}

// IsNull reports whether raw is JSON null.
func IsNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }

// Has reports whether name is one of f, exactly.
func (f *Names) Has(name string) bool { return f.exact[name] }
