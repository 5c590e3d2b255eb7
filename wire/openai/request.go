package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/jsonenc"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/models"
)

// Request is what the gateway needs of a chat request. Every field the
// client sent, known or not, is kept in fields and passed to the backend.
type Request struct {
	fields map[string]json.RawMessage
	// api is the backend route it goes to: chat (the default), legacy
	// completions or embeddings.
	API models.API

	Model        string
	Stream       bool // the body's "stream" (the OpenAI route follows it)
	IncludeUsage bool // stream_options.include_usage
	// MaxTokens is the output cap of each choice: the larger of
	// max_tokens and max_completion_tokens when both are sent (the backend
	// may honour either); 0 when neither is, until capOutput sets one.
	MaxTokens int
	// N is how many choices the backend generates (n, 1 by default).
	N int
	// FitWindow lowers an output cap the context window has no room for
	// to the room the prompt estimate leaves, instead of refusing it: for
	// clients that ask for a fixed cap whatever the model (Claude Code
	// asks for 32,000 tokens).
	FitWindow bool
	// PromptTokens is the realistic estimate of the prompt, which rate
	// limits reserve and the context window is checked against;
	// PromptBound the most tokens a backend can bill for it, which
	// budgets hold (bound.go). Both are set by measure, once the model
	// (and so what an image costs) is known.
	PromptTokens, PromptBound int
	// Extra are tokens the model reads that no chat message carries (a
	// PDF document's pages, toward an Anthropic backend), added to the
	// estimate and the bound.
	Extra int
	// text is what the model reads of the request, images its images,
	// and template the chat template's own tokens the bound allows.
	text     promptText
	images   int
	messages int
	template int
}

// roles the gateway accepts in messages.
var roles = map[string]bool{"system": true, "developer": true, "user": true, "assistant": true, "tool": true, "function": true}

// DecodeChat parses and checks a chat request body. Its errors are
// *apierr.Error values naming the offending field.
func DecodeChat(body []byte) (*Request, error) {
	q, err := newRequest(body, chatShape)
	if err != nil {
		return nil, err
	}
	if err := q.decodeMessages(); err != nil {
		return nil, err
	}
	if err := q.decodeSampling(); err != nil {
		return nil, err
	}
	q.template = templatePerRequest + templatePerMessage*q.messages
	return q, nil
}

// newRequest parses a body of shape as a JSON object with a model, none
// of whose members' names folds to a field without being it, and
// measures the members the model reads but those measured on their own.
func newRequest(body []byte, shape bodyShape) (*Request, error) {
	if !utf8.Valid(body) {
		return nil, apierr.BadRequest("", "the request body is not valid UTF-8 (JSON must be)")
	}
	q := &Request{}
	var err error
	if q.fields, err = jsonobj.Members(body); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return nil, apierr.BadRequest("", "the request body must be a JSON object")
		}
		return nil, apierr.BadRequest("", "malformed JSON: "+err.Error())
	}
	if q.fields == nil {
		return nil, apierr.BadRequest("", "the request body must be a JSON object")
	}
	var folded string
	for name, raw := range q.fields {
		if !shape.names.Has(name) && shape.names.Check("", name) != nil && (folded == "" || name < folded) {
			folded = name
		}
		if !shape.unread[name] {
			q.text.add(raw)
		}
	}
	if folded != "" {
		return nil, shape.names.Check("", folded)
	}
	raw, ok := q.fields["model"]
	if !ok || jsonobj.IsNull(raw) {
		return nil, apierr.BadRequest("model", "missing required parameter: model")
	}
	if q.Model, err = jsonobj.String(raw); err != nil {
		return nil, apierr.BadRequest("model", "model must be a string")
	}
	if q.Model == "" {
		return nil, apierr.BadRequest("model", "model must not be empty")
	}
	return q, nil
}

// decodeSampling checks what chat and legacy completions share: the
// sampling ranges, the output caps, n, stream and stream_options.
func (q *Request) decodeSampling() error {
	for _, r := range []struct {
		name     string
		min, max float64
	}{
		{"temperature", 0, 2}, {"top_p", 0, 1},
		{"presence_penalty", -2, 2}, {"frequency_penalty", -2, 2},
	} {
		if err := q.checkNumber(r.name, r.min, r.max); err != nil {
			return err
		}
	}
	for _, name := range []string{"max_tokens", "max_completion_tokens"} {
		n, err := q.positiveInt(name)
		if err != nil {
			return err
		}
		q.MaxTokens = max(q.MaxTokens, n)
	}
	n, err := q.positiveInt("n")
	if err != nil {
		return err
	} else if n > 128 {
		return apierr.BadRequest("n", "n must be at most 128")
	}
	q.N = max(n, 1)
	if raw, ok := q.fields["stream"]; ok && !jsonobj.IsNull(raw) {
		if json.Unmarshal(raw, &q.Stream) != nil {
			return apierr.BadRequest("stream", "stream must be a boolean")
		}
	}
	if raw, ok := q.fields["stream_options"]; ok && !jsonobj.IsNull(raw) {
		var so struct {
			IncludeUsage *bool `json:"include_usage"`
		}
		if raw[0] != '{' || json.Unmarshal(raw, &so) != nil {
			return apierr.BadRequest("stream_options", "stream_options must be an object with a boolean include_usage")
		}
		if err := streamOptionsFields.CheckRaw("stream_options", raw); err != nil {
			return err
		}
		q.IncludeUsage = so.IncludeUsage != nil && *so.IncludeUsage
	}
	return nil
}

func (q *Request) checkNumber(name string, min, max float64) error {
	raw, ok := q.fields[name]
	if !ok || jsonobj.IsNull(raw) {
		return nil
	}
	var f float64
	if json.Unmarshal(raw, &f) != nil {
		return apierr.BadRequest(name, name+" must be a number")
	}
	if f < min || f > max {
		return apierr.BadRequest(name, fmt.Sprintf("%s must be between %g and %g, got %g", name, min, max, f))
	}
	return nil
}

// positiveInt returns the named integer field, 0 when absent.
func (q *Request) positiveInt(name string) (int, error) {
	raw, ok := q.fields[name]
	if !ok || jsonobj.IsNull(raw) {
		return 0, nil
	}
	var n int64
	if json.Unmarshal(raw, &n) != nil {
		return 0, apierr.BadRequest(name, name+" must be an integer")
	}
	if n < 1 || n > 1<<31 {
		return 0, apierr.BadRequest(name, fmt.Sprintf("%s must be a positive integer, got %d", name, n))
	}
	return int(n), nil
}

// measure sets the prompt's estimate and bound: its text, its images at
// what one costs on m, and (the bound) the template's tokens.
func (q *Request) measure(m *models.Model) {
	images := q.images * m.ImageTokens
	q.PromptTokens = q.text.estimate() + images + q.Extra
	q.PromptBound = q.text.bound() + images + q.template + q.Extra
}

// Check measures the request for m and applies the model's limits:
// vision and the context window.
func (q *Request) Check(m *models.Model) error {
	if q.images > 0 && !m.Vision {
		return apierr.BadRequest("messages", m.Name+" does not accept image input; use a model with vision")
	}
	q.measure(m)
	if q.FitWindow && q.PromptTokens < m.ContextWindow && q.PromptTokens+q.MaxTokens > m.ContextWindow {
		q.MaxTokens = m.ContextWindow - q.PromptTokens
		q.fields["max_tokens"] = strconv.AppendInt(nil, int64(q.MaxTokens), 10)
	}
	if q.MaxTokens > 0 && q.PromptTokens+q.MaxTokens > m.ContextWindow || q.PromptTokens > m.ContextWindow {
		return &apierr.Error{Code: apierr.CodeContextLength, Param: "messages",
			Message: fmt.Sprintf("%s's maximum context length is %d tokens; this request asks for about %d (%d in the messages, %d in the completion): shorten the messages or lower max_tokens",
				m.Name, m.ContextWindow, q.PromptTokens+q.MaxTokens, q.PromptTokens, q.MaxTokens)}
	}
	return nil
}

// object is the answer's object, and streamObject each chunk's.
func (q *Request) Object() string {
	if q.API == models.CompletionsAPI {
		return "text_completion"
	}
	return "chat.completion"
}

func (q *Request) StreamObject() string {
	if q.API == models.CompletionsAPI {
		return "text_completion"
	}
	return "chat.completion.chunk"
}

// capOutput holds a request that sets no output cap to the model's: the
// backend is sent max_tokens, so that what it may generate, and so what
// admission reserves, is bounded. The cap leaves room for the prompt
// estimate in the context window.
func (q *Request) CapOutput(m *models.Model) {
	if q.MaxTokens > 0 || q.API == models.EmbeddingsAPI {
		return
	}
	q.MaxTokens = max(min(m.MaxOutputTokens, m.ContextWindow-q.PromptTokens), 1)
	q.fields["max_tokens"] = strconv.AppendInt(nil, int64(q.MaxTokens), 10)
}

// upstreamBody is the request to send the backend, without "model" (the
// backend's own name is added per backend). Streams always ask for usage,
// so that every stream can be charged what the backend counted. It is
// written by hand, the members sorted by name and their values as the
// client sent them (checked JSON).
func (q *Request) UpstreamBody(stream bool) []byte {
	names := make([]string, 0, len(q.fields)+2)
	size := 32
	for k, v := range q.fields {
		if k != "model" && (q.API == models.EmbeddingsAPI || k != "stream" && k != "stream_options") {
			names = append(names, k)
			size += len(k) + len(v) + 4
		}
	}
	if q.API != models.EmbeddingsAPI {
		names = append(names, "stream")
		if stream {
			names = append(names, "stream_options")
		}
	}
	slices.Sort(names)
	b := make([]byte, 0, size+len(q.fields["stream_options"]))
	b = append(b, '{')
	for i, k := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(jsonenc.AppendString(b, k), ':')
		switch {
		case q.API == models.EmbeddingsAPI:
			b = append(b, q.fields[k]...)
		case k == "stream":
			b = strconv.AppendBool(b, stream)
		case k == "stream_options":
			b = q.appendStreamOptions(b)
		default:
			b = append(b, q.fields[k]...)
		}
	}
	return append(b, '}')
}

// appendStreamOptions appends the client's stream_options (checked in
// DecodeChat) with include_usage set.
func (q *Request) appendStreamOptions(b []byte) []byte {
	b = append(b, '{')
	if raw, ok := q.fields["stream_options"]; ok {
		so, _ := jsonobj.Members(raw)
		for _, k := range slices.Sorted(maps.Keys(so)) {
			if k != "include_usage" {
				b = append(append(jsonenc.AppendString(b, k), ':'), so[k]...)
				b = append(b, ',')
			}
		}
	}
	return append(b, `"include_usage":true}`...)
}
