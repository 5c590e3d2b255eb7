package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/models"
)

// imageTokens is what one image part adds to a prompt estimate: the cost
// of a 1024×1024 image at high detail in OpenAI's accounting. The estimate
// only has to be close; settlement replaces it with the backend's count.
const imageTokens = 765

// chatRequest is what the gateway needs of a chat request. Every field the
// client sent, known or not, is kept in fields and passed to the backend.
type chatRequest struct {
	fields map[string]json.RawMessage
	// api is the backend route it goes to: chat (the default), legacy
	// completions or embeddings.
	api models.API

	Model        string
	Stream       bool // the body's "stream" (the OpenAI route follows it)
	IncludeUsage bool // stream_options.include_usage
	// MaxTokens is the output cap of each choice: the larger of
	// max_tokens and max_completion_tokens when both are sent (the backend
	// may honour either); 0 when neither is, until capOutput sets one.
	MaxTokens int
	// N is how many choices the backend generates (n, 1 by default).
	N int
	// PromptTokens is the estimate of the prompt: characters / 4, rounded
	// up, plus imageTokens per image.
	PromptTokens int
	images       int
}

// roles the gateway accepts in messages.
var roles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// decodeChat parses and checks a chat request body. Its errors are
// *Error values naming the offending field.
func decodeChat(body []byte) (*chatRequest, error) {
	c, err := newRequest(body)
	if err != nil {
		return nil, err
	}
	if err := c.decodeMessages(); err != nil {
		return nil, err
	}
	if err := c.decodeSampling(); err != nil {
		return nil, err
	}
	if raw, ok := c.fields["tools"]; ok {
		c.PromptTokens += (len(raw) + 3) / 4
	}
	return c, nil
}

// newRequest parses a body as a JSON object with a model.
func newRequest(body []byte) (*chatRequest, error) {
	c := &chatRequest{}
	var err error
	if c.fields, err = objectFields(body); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, badRequest("", "the request body must be a JSON object")
		}
		return nil, badRequest("", "malformed JSON: "+err.Error())
	}
	if c.fields == nil {
		return nil, badRequest("", "the request body must be a JSON object")
	}
	raw, ok := c.fields["model"]
	if !ok || isNull(raw) {
		return nil, badRequest("model", "missing required parameter: model")
	}
	if c.Model, err = decodeString(raw); err != nil {
		return nil, badRequest("model", "model must be a string")
	}
	if c.Model == "" {
		return nil, badRequest("model", "model must not be empty")
	}
	return c, nil
}

// objectFields splits a JSON object into its members' raw values, which
// share body's bytes: in one pass where the object is plain, else (names
// with escapes, invalid JSON, not an object) through encoding/json, which
// words the error.
func objectFields(body []byte) (map[string]json.RawMessage, error) {
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

// decodeString decodes a JSON string, at once where it holds no escape.
func decodeString(raw []byte) (string, error) {
	if s, ok := chunk.String(raw); ok {
		return s, nil
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// decodeSampling checks what chat and legacy completions share: the
// sampling ranges, the output caps, n, stream and stream_options.
func (c *chatRequest) decodeSampling() error {
	for _, r := range []struct {
		name     string
		min, max float64
	}{
		{"temperature", 0, 2}, {"top_p", 0, 1},
		{"presence_penalty", -2, 2}, {"frequency_penalty", -2, 2},
	} {
		if err := c.checkNumber(r.name, r.min, r.max); err != nil {
			return err
		}
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		n, err := c.positiveInt(name)
		if err != nil {
			return err
		}
		c.MaxTokens = max(c.MaxTokens, n)
	}
	n, err := c.positiveInt("n")
	if err != nil {
		return err
	} else if n > 128 {
		return badRequest("n", "n must be at most 128")
	}
	c.N = max(n, 1)
	if raw, ok := c.fields["stream"]; ok && !isNull(raw) {
		if json.Unmarshal(raw, &c.Stream) != nil {
			return badRequest("stream", "stream must be a boolean")
		}
	}
	if raw, ok := c.fields["stream_options"]; ok && !isNull(raw) {
		var so struct {
			IncludeUsage *bool `json:"include_usage"`
		}
		if raw[0] != '{' || json.Unmarshal(raw, &so) != nil {
			return badRequest("stream_options", "stream_options must be an object with a boolean include_usage")
		}
		c.IncludeUsage = so.IncludeUsage != nil && *so.IncludeUsage
	}
	return nil
}

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

func (c *chatRequest) checkNumber(name string, min, max float64) error {
	raw, ok := c.fields[name]
	if !ok || isNull(raw) {
		return nil
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		return badRequest(name, name+" must be a number")
	}
	if f < min || f > max {
		return badRequest(name, fmt.Sprintf("%s must be between %g and %g, got %g", name, min, max, f))
	}
	return nil
}

// positiveInt returns the named integer field, 0 when absent.
func (c *chatRequest) positiveInt(name string) (int, error) {
	raw, ok := c.fields[name]
	if !ok || isNull(raw) {
		return 0, nil
	}
	var n int64
	if json.Unmarshal(raw, &n) != nil {
		return 0, badRequest(name, name+" must be an integer")
	}
	if n < 1 || n > 1<<31 {
		return 0, badRequest(name, fmt.Sprintf("%s must be a positive integer, got %d", name, n))
	}
	return int(n), nil
}

// check applies the model's limits: vision and the context window.
func (c *chatRequest) check(m *models.Model) error {
	if c.images > 0 && !m.Vision {
		return badRequest("messages", m.Name+" does not accept image input; use a model with vision")
	}
	if c.MaxTokens > 0 && c.PromptTokens+c.MaxTokens > m.ContextWindow || c.PromptTokens > m.ContextWindow {
		return &Error{Code: CodeContextLength, Param: "messages",
			Message: fmt.Sprintf("%s's maximum context length is %d tokens; this request asks for about %d (%d in the messages, %d in the completion): shorten the messages or lower max_tokens",
				m.Name, m.ContextWindow, c.PromptTokens+c.MaxTokens, c.PromptTokens, c.MaxTokens)}
	}
	return nil
}

// object is the answer's object, and streamObject each chunk's.
func (c *chatRequest) object() string {
	if c.api == models.CompletionsAPI {
		return "text_completion"
	}
	return "chat.completion"
}

func (c *chatRequest) streamObject() string {
	if c.api == models.CompletionsAPI {
		return "text_completion"
	}
	return "chat.completion.chunk"
}

// capOutput holds a request that sets no output cap to the model's: the
// backend is sent max_tokens, so that what it may generate, and so what
// admission reserves, is bounded. The cap leaves room for the prompt
// estimate in the context window.
func (c *chatRequest) capOutput(m *models.Model) {
	if c.MaxTokens > 0 || c.api == models.EmbeddingsAPI {
		return
	}
	c.MaxTokens = max(min(m.MaxOutputTokens, m.ContextWindow-c.PromptTokens), 1)
	c.fields["max_tokens"] = strconv.AppendInt(nil, int64(c.MaxTokens), 10)
}

// upstreamBody is the request to send the backend, without "model" (the
// backend's own name is added per backend). Streams always ask for usage,
// so that every stream can be charged what the backend counted. It is
// written by hand, the members sorted by name and their values as the
// client sent them (checked JSON).
func (c *chatRequest) upstreamBody(stream bool) []byte {
	names := make([]string, 0, len(c.fields)+2)
	size := 32
	for k, v := range c.fields {
		if k != "model" && (c.api == models.EmbeddingsAPI || k != "stream" && k != "stream_options") {
			names = append(names, k)
			size += len(k) + len(v) + 4
		}
	}
	if c.api != models.EmbeddingsAPI {
		names = append(names, "stream")
		if stream {
			names = append(names, "stream_options")
		}
	}
	slices.Sort(names)
	b := make([]byte, 0, size+len(c.fields["stream_options"]))
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(appendJSONString(b, k), ':')
		switch {
		case c.api == models.EmbeddingsAPI:
			b = append(b, c.fields[k]...)
		case k == "stream":
			b = strconv.AppendBool(b, stream)
		case k == "stream_options":
			b = c.appendStreamOptions(b)
		default:
			b = append(b, c.fields[k]...)
		}
	}
	return append(b, '}')
}

// appendStreamOptions appends the client's stream_options (checked in
// decodeChat) with include_usage set.
func (c *chatRequest) appendStreamOptions(b []byte) []byte {
	b = append(b, '{')
	if raw, ok := c.fields["stream_options"]; ok {
		so, _ := objectFields(raw)
		for _, k := range slices.Sorted(maps.Keys(so)) {
			if k != "include_usage" {
				b = append(append(appendJSONString(b, k), ':'), so[k]...)
				b = append(b, ',')
			}
		}
	}
	return append(b, `"include_usage":true}`...)
}

func isNull(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }
