package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/clip"
)

// A chat request's messages: their roles and content, and what they add
// to the prompt estimate.

type message struct {
	Role    *string         `json:"role"`
	Content json.RawMessage `json:"content"`
}

type contentPart struct {
	Type     string          `json:"type"`
	Text     *string         `json:"text"`
	ImageURL json.RawMessage `json:"image_url"`
}

func (c *chatRequest) decodeMessages() error {
	raw, ok := c.fields["messages"]
	if !ok || isNull(raw) {
		return badRequest("messages", "missing required parameter: messages")
	}
	msgs, ok := arrayElements(raw)
	if !ok {
		return badRequest("messages", "messages must be an array of message objects")
	}
	if len(msgs) == 0 {
		return badRequest("messages", "messages must not be empty")
	}
	chars := 0
	for i, rm := range msgs {
		m, ok := decodeMessage(rm)
		if !ok {
			return badRequest(msgParam(i, ""), msgParam(i, "")+" must be an object with a string role")
		}
		if m.Role == nil {
			return badRequest(msgParam(i, ".role"), "missing required parameter: "+msgParam(i, ".role"))
		}
		if !roles[*m.Role] {
			return badRequest(msgParam(i, ".role"), fmt.Sprintf("unknown role %q: use system, developer, user, assistant or tool", clip.String(*m.Role, 40)))
		}
		n, err := c.decodeContent(i, *m.Role, m.Content)
		if err != nil {
			return err
		}
		chars += n
	}
	c.PromptTokens += (chars + 3) / 4
	return nil
}

// msgParam names message i's field (suffix ".role", …), for an error:
// built only when one is answered.
func msgParam(i int, suffix string) string { return "messages[" + strconv.Itoa(i) + "]" + suffix }

// arrayElements splits a JSON array into its elements' raw values, in one
// pass, or through encoding/json where that walk bails.
func arrayElements(raw []byte) ([]json.RawMessage, bool) {
	out := make([]json.RawMessage, 0, 4)
	if chunk.Elements(raw, func(v []byte) bool { out = append(out, v); return true }) {
		return out, true
	}
	out = nil
	return out, json.Unmarshal(raw, &out) == nil
}

// decodeMessage reads a message's role and content. Plain member names
// are matched in one pass; a name that only folds to role or content
// (encoding/json matches struct fields regardless of case) sends the
// message through encoding/json, as does a role that is not a plain string.
func decodeMessage(rm []byte) (message, bool) {
	var m message
	if len(rm) == 0 || rm[0] != '{' {
		return m, false
	}
	if chunk.Fields(rm, func(name, value []byte) bool {
		switch string(name) {
		case "role":
			if isNull(value) {
				m.Role = nil
				return true
			}
			s, ok := chunk.String(value)
			m.Role = &s
			return ok
		case "content":
			m.Content = value
			return true
		}
		return !bytes.EqualFold(name, []byte("role")) && !bytes.EqualFold(name, []byte("content"))
	}) {
		return m, true
	}
	m = message{}
	return m, json.Unmarshal(rm, &m) == nil
}

// decodeContent checks message i's content and returns its character
// count.
func (c *chatRequest) decodeContent(i int, role string, raw json.RawMessage) (int, error) {
	param := func() string { return msgParam(i, ".content") }
	if len(raw) == 0 || isNull(raw) {
		if role == "assistant" || role == "function" {
			return 0, nil // an assistant turn that only called tools
		}
		return 0, badRequest(param(), "missing required parameter: "+param())
	}
	switch raw[0] {
	case '"':
		s, err := decodeString(raw)
		if err != nil {
			return 0, badRequest(param(), param()+" is not a valid string")
		}
		return utf8.RuneCountInString(s), nil
	case '[':
		var parts []json.RawMessage
		if json.Unmarshal(raw, &parts) != nil {
			return 0, badRequest(param(), param()+" must be a string or an array of content parts")
		}
		chars := 0
		for j, rp := range parts {
			pp := param() + "[" + strconv.Itoa(j) + "]"
			var p contentPart
			if len(rp) == 0 || rp[0] != '{' || json.Unmarshal(rp, &p) != nil {
				return 0, badRequest(pp, pp+" must be a content part object with a type")
			}
			switch p.Type {
			case "text":
				if p.Text == nil {
					return 0, badRequest(pp+".text", "a text part needs a string text")
				}
				chars += utf8.RuneCountInString(*p.Text)
			case "image_url":
				var img struct {
					URL string `json:"url"`
				}
				if len(p.ImageURL) == 0 || p.ImageURL[0] != '{' || json.Unmarshal(p.ImageURL, &img) != nil || img.URL == "" {
					return 0, badRequest(pp+".image_url", "an image_url part needs image_url.url")
				}
				c.images++
				c.PromptTokens += imageTokens
			case "refusal":
			default:
				return 0, badRequest(pp+".type", fmt.Sprintf("unsupported content part type %q: use text or image_url", clip.String(p.Type, 40)))
			}
		}
		return chars, nil
	}
	return 0, badRequest(param(), param()+" must be a string or an array of content parts")
}
