package chunk

// The validating JSON walk under Parse and Fields: it accepts exactly what
// encoding/json accepts, or bails out to it.

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

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

// Elements calls elem with the raw value of each element of the array
// data, in order. It reports false if data is not one valid JSON array,
// or if elem returns false.
func Elements(data []byte, elem func(value []byte) bool) bool {
	p := parser{b: data}
	p.ws()
	if p.i >= len(p.b) || p.b[p.i] != '[' {
		return false
	}
	p.i++
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
	} else {
		for {
			p.ws()
			start, ok := p.value(0)
			if !ok || !elem(p.b[start:p.i]) {
				return false
			}
			p.ws()
			if p.i >= len(p.b) {
				return false
			}
			if p.b[p.i] == ']' {
				p.i++
				break
			}
			if p.b[p.i] != ',' {
				return false
			}
			p.i++
		}
	}
	p.ws()
	return p.i == len(p.b)
}

// String decodes a JSON string literal; false if raw is not one.
func String(raw []byte) (string, bool) {
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
