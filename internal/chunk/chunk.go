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
	ServiceTier       []byte // the raw value, nil if absent
	Choices           []byte // the raw value, nil if absent
	Usage             []byte // the raw value, nil if absent or null
	Error             []byte // the raw value, nil if absent or null

	// Of the choices:
	NChoices int // how many
	// Content is the text increment of the choice with index 0 (a chat
	// delta's content, or a legacy completion's text); "" when this event
	// carries none of it.
	Content string
	Finish  []string // each non-empty finish_reason, in order
	// Counted is the gateway's own count of the tokens this event
	// carries, for a backend that reports no usage: one per choice with
	// text, and a tool call's name and arguments at four characters a
	// token (at least one a piece).
	Counted int
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
		case fTier:
			c.ServiceTier = raw
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
	fTier
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
	case "service_tier":
		return fTier, true
	case "choices":
		return fChoices, true
	case "usage":
		return fUsage, true
	case "error":
		return fError, true
	}
	for _, k := range []string{"created", "system_fingerprint", "service_tier", "choices", "usage", "error"} {
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
		if !p.choice(c) {
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

// choice reads one choice: its index, its delta (or a legacy
// completion's text) and its finish_reason.
func (p *parser) choice(c *Chunk) bool {
	var seenDelta, seenFinish, seenIndex, seenText bool
	index := int64(c.NChoices) // a choice without an index is taken by its place
	var text string
	ok := p.object(func(key []byte) bool {
		switch string(key) {
		case "index":
			if seenIndex {
				return false
			}
			seenIndex = true
			start, ok := p.value(0)
			n, err := strconv.ParseInt(string(p.b[start:p.i]), 10, 64)
			index = n
			return ok && err == nil
		case "delta":
			if seenDelta {
				return false
			}
			seenDelta = true
			return p.delta(c, &text)
		case "text":
			if seenText {
				return false
			}
			seenText = true
			start, ok := p.value(0)
			if !ok {
				return false
			}
			return p.content(c, p.b[start:p.i], &text)
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
			s, ok := String(raw)
			if !ok {
				return false
			}
			if s != "" {
				c.Finish = append(c.Finish, s)
				c.Substantive = true
			}
			return true
		}
		for _, k := range []string{"index", "delta", "text", "finish_reason"} {
			if bytes.EqualFold(key, []byte(k)) {
				return false
			}
		}
		_, ok := p.value(0)
		return ok
	})
	if ok && index == 0 {
		c.Content = text
	}
	return ok
}

// content reads a text increment: substantive and one token when not "".
func (p *parser) content(c *Chunk, raw []byte, text *string) bool {
	if isNull(raw) {
		return true
	}
	s, ok := String(raw)
	if !ok {
		return false
	}
	if s != "" {
		c.Substantive = true
		c.Counted++
	}
	*text = s
	return true
}

func (p *parser) delta(c *Chunk, text *string) bool {
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
			return p.content(c, raw, text)
		}
		if bytes.EqualFold(key, []byte("content")) {
			return false
		}
		if string(key) != "role" && !isNull(raw) && string(raw) != `""` {
			c.Substantive = true
		}
		if string(key) == "tool_calls" {
			c.Counted += toolTokens(raw)
		}
		return true
	})
}

// toolTokens is the gateway's count of tool-call pieces: their names and
// arguments at four characters a token, at least one a piece. Tool calls
// are rare enough for encoding/json.
func toolTokens(raw []byte) int {
	var calls []struct {
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	}
	json.Unmarshal(raw, &calls)
	n := 0
	for _, tc := range calls {
		n += max((len(tc.Function.Name)+len(tc.Function.Arguments)+3)/4, 1)
	}
	return n
}

// slow is Parse by encoding/json, the reference the fast walk agrees with.
func slow(data []byte, c *Chunk) error {
	var ev struct {
		Created           int64           `json:"created"`
		SystemFingerprint json.RawMessage `json:"system_fingerprint"`
		ServiceTier       json.RawMessage `json:"service_tier"`
		Choices           json.RawMessage `json:"choices"`
		Usage             json.RawMessage `json:"usage"`
		Error             json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		return err
	}
	c.Created = ev.Created
	c.SystemFingerprint = ev.SystemFingerprint
	c.ServiceTier = ev.ServiceTier
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
		Index        *int64                     `json:"index"`
		Delta        map[string]json.RawMessage `json:"delta"`
		Text         *string                    `json:"text"`
		FinishReason *string                    `json:"finish_reason"`
	}
	json.Unmarshal(ev.Choices, &chs)
	c.NChoices = len(chs)
	for i, ch := range chs {
		slowChoice(c, i, ch.Index, ch.Delta, ch.Text, ch.FinishReason)
	}
	return nil
}

func slowChoice(c *Chunk, place int, index *int64, delta map[string]json.RawMessage, text, finish *string) {
	first := (index == nil && place == 0) || (index != nil && *index == 0)
	if finish != nil && *finish != "" {
		c.Finish = append(c.Finish, *finish)
		c.Substantive = true
	}
	var s string
	if v, ok := delta["content"]; ok {
		json.Unmarshal(v, &s)
	} else if text != nil {
		s = *text
	}
	if s != "" {
		c.Substantive = true
		c.Counted++
	}
	if first {
		c.Content = s
	}
	for k, v := range delta {
		if k != "role" && k != "content" && !isNull(v) && string(v) != `""` {
			c.Substantive = true
		}
		if k == "tool_calls" {
			c.Counted += toolTokens(v)
		}
	}
}
