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
	"strconv"
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
