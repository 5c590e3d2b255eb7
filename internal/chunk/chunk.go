// Package chunk reads the few fields a gateway needs of an OpenAI
// chat.completion.chunk, the data of one stream event, in one pass and
// without copying what passes through to the client. It reads a whole
// chat.completion too: its choices carry a message where a chunk's carry
// a delta, and the fields the gateway needs are the same.
//
// Every backend event of every stream goes through it, so it matters:
// encoding/json took a fifth of the gateway's CPU there, validating each
// event and then decoding its choices a second time. Parse walks the event
// once, validating as it goes, and falls back to encoding/json for what
// its walk does not decide (field names in another case, duplicate fields,
// unexpected types, deep nesting), so its answers are encoding/json's.
package chunk

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Chunk is what Parse reads of an event. Its byte slices alias the event.
type Chunk struct {
	Created           int64  // 0 if absent or null
	SystemFingerprint []byte // the raw value, nil if absent
	Choices           []byte // the raw value, nil if absent
	Usage             []byte // the raw value, nil if absent or null
	Error             []byte // the raw value, nil if absent or null

	// Of the choices:
	NChoices int      // how many
	Content  string   // choices[0].delta.content
	Finish   []string // each non-empty finish_reason, in order
	// Substantive is whether a choice carries more than a role: a
	// finish_reason, or a delta field other than role that is neither
	// null nor "".
	Substantive bool
}

// Parse reads data into c, reusing c's Finish slice. It fails only where
// encoding/json would fail to decode data.
func Parse(data []byte, c *Chunk) error {
	fin := c.Finish[:0]
	*c = Chunk{Finish: fin}
	p := parser{b: data}
	if p.chunk(c) {
		return nil
	}
	*c = Chunk{Finish: fin}
	return slow(data, c)
}

// errBail stops the fast walk: encoding/json decides instead.
var errBail = errors.New("bail")

// maxDepth bounds the walk's recursion; encoding/json itself refuses
// nesting past 10000.
const maxDepth = 512

type parser struct {
	b []byte
	i int
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// chunk walks the event; false means the fast walk cannot decide.
func (p *parser) chunk(c *Chunk) bool {
	p.ws()
	var seen uint8
	ok := p.object(func(key []byte) bool {
		bit, field := topField(key)
		if bit == 0 {
			if field {
				return false // another case: encoding/json's rules
			}
			_, ok := p.value(0)
			return ok
		}
		if seen&bit != 0 {
			return false // a duplicate: the last wins in encoding/json
		}
		seen |= bit
		start, ok := p.value(0)
		if !ok {
			return false
		}
		raw := p.b[start:p.i]
		switch bit {
		case fCreated:
			if isNull(raw) {
				return true
			}
			n, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return false
			}
			c.Created = n
		case fFingerprint:
			c.SystemFingerprint = raw
		case fChoices:
			c.Choices = raw
		case fUsage:
			if !isNull(raw) {
				c.Usage = raw
			}
		case fError:
			if !isNull(raw) {
				c.Error = raw
			}
		}
		return true
	})
	if !ok {
		return false
	}
	p.ws()
	if p.i != len(p.b) {
		return false
	}
	if c.Choices != nil && !isNull(c.Choices) {
		return choices(c.Choices, c)
	}
	return true
}

const (
	fCreated uint8 = 1 << iota
	fFingerprint
	fChoices
	fUsage
	fError
)

// topField names the event's fields the gateway reads; field reports a
// name that matches one only when case is ignored.
func topField(key []byte) (bit uint8, field bool) {
	switch string(key) {
	case "created":
		return fCreated, true
	case "system_fingerprint":
		return fFingerprint, true
	case "choices":
		return fChoices, true
	case "usage":
		return fUsage, true
	case "error":
		return fError, true
	}
	for _, k := range []string{"created", "system_fingerprint", "choices", "usage", "error"} {
		if bytes.EqualFold(key, []byte(k)) {
			return 0, true
		}
	}
	return 0, false
}

// choices reads an array of choice objects (already validated).
func choices(raw []byte, c *Chunk) bool {
	p := parser{b: raw}
	if p.b[0] != '[' {
		return false
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		return true
	}
	for {
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != '{' {
			return false
		}
		if !p.choice(c, c.NChoices == 0) {
			return false
		}
		c.NChoices++
		p.ws()
		if p.b[p.i] == ']' {
			return true
		}
		p.i++ // ','
	}
}

func (p *parser) choice(c *Chunk, first bool) bool {
	var seenDelta, seenFinish bool
	return p.object(func(key []byte) bool {
		switch string(key) {
		case "delta":
			if seenDelta {
				return false
			}
			seenDelta = true
			return p.delta(c, first)
		case "finish_reason":
			if seenFinish {
				return false
			}
			seenFinish = true
			start, ok := p.value(0)
			if !ok {
				return false
			}
			raw := p.b[start:p.i]
			if isNull(raw) {
				return true
			}
			s, ok := str(raw)
			if !ok {
				return false
			}
			if s != "" {
				c.Finish = append(c.Finish, s)
				c.Substantive = true
			}
			return true
		}
		if bytes.EqualFold(key, []byte("delta")) || bytes.EqualFold(key, []byte("finish_reason")) {
			return false
		}
		_, ok := p.value(0)
		return ok
	})
}

func (p *parser) delta(c *Chunk, first bool) bool {
	if p.i < len(p.b) && p.b[p.i] == 'n' {
		_, ok := p.value(0) // null
		return ok
	}
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	seenContent := false
	return p.object(func(key []byte) bool {
		start, ok := p.value(0)
		if !ok {
			return false
		}
		raw := p.b[start:p.i]
		if string(key) == "content" {
			if seenContent {
				return false
			}
			seenContent = true
			if isNull(raw) {
				return true
			}
			s, ok := str(raw)
			if !ok {
				return false
			}
			if s != "" {
				c.Substantive = true
			}
			if first {
				c.Content = s
			}
			return true
		}
		if bytes.EqualFold(key, []byte("content")) {
			return false
		}
		if string(key) != "role" && !isNull(raw) && string(raw) != `""` {
			c.Substantive = true
		}
		return true
	})
}

// Fields calls field with the name and raw value of each member of the
// object data, in order. It reports false if data is not one valid JSON
// object, or holds a name with escapes (which field would see raw), or if
// field returns false.
func Fields(data []byte, field func(name, value []byte) bool) bool {
	p := parser{b: data}
	p.ws()
	ok := p.object(func(name []byte) bool {
		start, ok := p.value(0)
		return ok && field(name, p.b[start:p.i])
	})
	p.ws()
	return ok && p.i == len(p.b)
}

// str decodes a JSON string literal; false if raw is not one.
func str(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	if bytes.IndexByte(in, '\\') < 0 && utf8.Valid(in) {
		return string(in), true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

func isNull(raw []byte) bool { return string(raw) == "null" }

// object walks an object at p.i, calling field with p.i at each value
// (whitespace skipped); field must consume the value.
func (p *parser) object(field func(key []byte) bool) bool {
	if p.i >= len(p.b) || p.b[p.i] != '{' {
		return false
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return true
	}
	for {
		p.ws()
		start := p.i
		if !p.string() {
			return false
		}
		key := p.b[start+1 : p.i-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			return false // an escaped name: encoding/json's rules
		}
		p.ws()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return false
		}
		p.i++
		p.ws()
		if !field(key) {
			return false
		}
		p.ws()
		if p.i >= len(p.b) {
			return false
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return true
		default:
			return false
		}
	}
}

// value validates the value at p.i and moves past it, returning where it
// started.
func (p *parser) value(depth int) (int, bool) {
	if depth > maxDepth {
		return 0, false
	}
	start := p.i
	if p.i >= len(p.b) {
		return 0, false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		return start, p.string()
	case c == '{':
		return start, p.object(func([]byte) bool { _, ok := p.value(depth + 1); return ok })
	case c == '[':
		p.i++
		p.ws()
		if p.i < len(p.b) && p.b[p.i] == ']' {
			p.i++
			return start, true
		}
		for {
			p.ws()
			if _, ok := p.value(depth + 1); !ok {
				return 0, false
			}
			p.ws()
			if p.i >= len(p.b) {
				return 0, false
			}
			switch p.b[p.i] {
			case ',':
				p.i++
			case ']':
				p.i++
				return start, true
			default:
				return 0, false
			}
		}
	case c == '-' || c >= '0' && c <= '9':
		return start, p.number()
	case c == 't':
		return start, p.literal("true")
	case c == 'f':
		return start, p.literal("false")
	case c == 'n':
		return start, p.literal("null")
	}
	return 0, false
}

func (p *parser) literal(lit string) bool {
	if !bytes.HasPrefix(p.b[p.i:], []byte(lit)) {
		return false
	}
	p.i += len(lit)
	return true
}

// string moves past a string literal, checking its escapes and that it
// holds no control character.
func (p *parser) string() bool {
	if p.i >= len(p.b) || p.b[p.i] != '"' {
		return false
	}
	p.i++
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return true
		case c < 0x20:
			return false
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return false
			}
			switch p.b[p.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				p.i++
			case 'u':
				if p.i+5 > len(p.b) {
					return false
				}
				for _, h := range p.b[p.i+1 : p.i+5] {
					if !isHex(h) {
						return false
					}
				}
				p.i += 5
			default:
				return false
			}
		default:
			p.i++
		}
	}
	return false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// number moves past a number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) number() bool {
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i >= len(p.b) {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '0':
		p.i++
	case c >= '1' && c <= '9':
		p.digits()
	default:
		return false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if p.digits() == 0 {
			return false
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return false
		}
	}
	return true
}

func (p *parser) digits() int {
	n := 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
		n++
	}
	return n
}

// slow is Parse by encoding/json, the reference the fast walk agrees with.
func slow(data []byte, c *Chunk) error {
	var ev struct {
		Created           int64           `json:"created"`
		SystemFingerprint json.RawMessage `json:"system_fingerprint"`
		Choices           json.RawMessage `json:"choices"`
		Usage             json.RawMessage `json:"usage"`
		Error             json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return err
	}
	c.Created = ev.Created
	c.SystemFingerprint = ev.SystemFingerprint
	c.Choices = ev.Choices
	if !isNull(ev.Usage) {
		c.Usage = ev.Usage
	}
	if !isNull(ev.Error) {
		c.Error = ev.Error
	}
	// What a choice holds is read leniently: a choice the gateway cannot
	// read still passes through to the client as it came.
	var chs []struct {
		Delta        map[string]json.RawMessage `json:"delta"`
		FinishReason *string                    `json:"finish_reason"`
	}
	json.Unmarshal(ev.Choices, &chs)
	c.NChoices = len(chs)
	for i, ch := range chs {
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			c.Finish = append(c.Finish, *ch.FinishReason)
			c.Substantive = true
		}
		for k, v := range ch.Delta {
			if k == "content" {
				var s string
				if json.Unmarshal(v, &s) == nil && i == 0 {
					c.Content = s
				}
			}
			if k != "role" && !isNull(v) && string(v) != `""` {
				c.Substantive = true
			}
		}
	}
	return nil
}
