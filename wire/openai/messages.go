package openai

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/jsonobj"
)

// A chat request's messages: their roles and content, and what the model
// reads of them.

type message struct {
	Role    *string         `json:"role"`
	Content json.RawMessage `json:"content"`
}

type contentPart struct {
	Type     string          `json:"type"`
	Text     *string         `json:"text"`
	ImageURL json.RawMessage `json:"image_url"`
}

// decodeMessages checks the messages and measures them: every byte of
// each message the model reads (its role, content, name, tool calls and
// their arguments, tool call ids, and whatever else it carries), but an
// image part's, which counts as an image.
func (q *Request) decodeMessages() error {
	raw, ok := q.fields["messages"]
	if !ok || jsonobj.IsNull(raw) {
		return apierr.BadRequest("messages", "missing required parameter: messages")
	}
	msgs, ok := jsonobj.Elements(raw)
	if !ok {
		return apierr.BadRequest("messages", "messages must be an array of message objects")
	}
	if len(msgs) == 0 {
		return apierr.BadRequest("messages", "messages must not be empty")
	}
	for i, rm := range msgs {
		m, err := decodeMessage(i, rm)
		if err != nil {
			return err
		}
		if m.Role == nil {
			return apierr.BadRequest(msgParam(i, ".role"), "missing required parameter: "+msgParam(i, ".role"))
		}
		if !roles[*m.Role] {
			return apierr.BadRequest(msgParam(i, ".role"), fmt.Sprintf("unknown role %q: use system, developer, user, assistant or tool", clip.String(*m.Role, 40)))
		}
		q.text.add(rm)
		if err := q.decodeContent(i, *m.Role, m.Content); err != nil {
			return err
		}
	}
	q.messages = len(msgs)
	return nil
}

// msgParam names message i's field (suffix ".role", …), for an error:
// built only when one is answered.
func msgParam(i int, suffix string) string { return "messages[" + strconv.Itoa(i) + "]" + suffix }

// decodeMessage reads message i's role and content, refusing a member
// whose name folds to one of a message's fields without being it. Plain
// member names are matched in one pass; escaped names, and a role that is
// not a plain string, go through encoding/json.
func decodeMessage(i int, rm []byte) (message, error) {
	var m message
	bad := func() error {
		return apierr.BadRequest(msgParam(i, ""), msgParam(i, "")+" must be an object with a string role")
	}
	if len(rm) == 0 || rm[0] != '{' {
		return m, bad()
	}
	var folded []byte
	if chunk.Fields(rm, func(name, value []byte) bool {
		switch string(name) {
		case "role":
			if jsonobj.IsNull(value) {
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
		if !messageFields.Has(string(name)) && messageFields.Check("", string(name)) != nil {
			folded = name
		}
		return folded == nil
	}) {
		return m, nil
	}
	if folded != nil {
		return m, messageFields.Check(msgParam(i, ""), string(folded))
	}
	fields, err := jsonobj.Members(rm)
	if err != nil || fields == nil {
		return m, bad()
	}
	if err := messageFields.CheckObject(msgParam(i, ""), fields); err != nil {
		return m, err
	}
	m = message{}
	if json.Unmarshal(rm, &m) != nil {
		return m, bad()
	}
	return m, nil
}

// decodeContent checks message i's content; an image part's bytes are
// taken back out of the measure, and the part counted as an image.
func (q *Request) decodeContent(i int, role string, raw json.RawMessage) error {
	param := func() string { return msgParam(i, ".content") }
	if len(raw) == 0 || jsonobj.IsNull(raw) {
		if role == "assistant" || role == "function" {
			return nil // an assistant turn that only called tools
		}
		return apierr.BadRequest(param(), "missing required parameter: "+param())
	}
	switch raw[0] {
	case '"':
		if _, err := jsonobj.String(raw); err != nil {
			return apierr.BadRequest(param(), param()+" is not a valid string")
		}
		return nil
	case '[':
		var parts []json.RawMessage
		if json.Unmarshal(raw, &parts) != nil {
			return apierr.BadRequest(param(), param()+" must be a string or an array of content parts")
		}
		for j, rp := range parts {
			if err := q.decodePart(param()+"["+strconv.Itoa(j)+"]", rp); err != nil {
				return err
			}
		}
		return nil
	}
	return apierr.BadRequest(param(), param()+" must be a string or an array of content parts")
}

// decodePart checks one content part, pp its name in an error.
func (q *Request) decodePart(pp string, rp json.RawMessage) error {
	var p contentPart
	if len(rp) == 0 || rp[0] != '{' || json.Unmarshal(rp, &p) != nil {
		return apierr.BadRequest(pp, pp+" must be a content part object with a type")
	}
	if err := partFields.CheckRaw(pp, rp); err != nil {
		return err
	}
	switch p.Type {
	case "text":
		if p.Text == nil {
			return apierr.BadRequest(pp+".text", "a text part needs a string text")
		}
	case "image_url":
		var img struct {
			URL string `json:"url"`
		}
		if len(p.ImageURL) == 0 || p.ImageURL[0] != '{' || json.Unmarshal(p.ImageURL, &img) != nil || img.URL == "" {
			return apierr.BadRequest(pp+".image_url", "an image_url part needs image_url.url")
		}
		q.text.sub(rp)
		q.images++
	case "refusal":
	default:
		return apierr.BadRequest(pp+".type", fmt.Sprintf("unsupported content part type %q: use text or image_url", clip.String(p.Type, 40)))
	}
	return nil
}
