package gateway

import (
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

// One meaning per field: a member whose name is not exactly a field of
// the API but folds to one is refused. Go's encoding/json matches names
// to fields regardless of case (Unicode simple folding: "max_tokenſ" is
// max_tokens, "meſſages" is messages), so a Go backend reads such a
// member as the field while obol, and a backend that matches exactly,
// read the field itself: {"max_tokens":5,"max_tokenſ":30000} would be
// reserved as 5 tokens and generated as 30000.

// fieldNames is the set of an API object's member names, looked up
// exactly and as encoding/json folds them.
type fieldNames struct {
	exact  map[string]bool
	folded map[string]string // fold(name) → name
}

func newFieldNames(names ...string) *fieldNames {
	f := &fieldNames{exact: map[string]bool{}, folded: map[string]string{}}
	for _, n := range names {
		f.exact[n] = true
		f.folded[foldName(n)] = n
	}
	return f
}

// check refuses name if it is not one of f but folds to one; where is the
// object's path in an error ("" for the body, "messages[2]", …).
func (f *fieldNames) check(where, name string) error {
	if f.exact[name] {
		return nil
	}
	known, ok := f.folded[foldName(name)]
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

// checkObject refuses the object's member that folds to one of f (the
// first by name, where several do).
func (f *fieldNames) checkObject(where string, fields map[string]json.RawMessage) error {
	var bad string
	for n := range fields {
		if !f.exact[n] && f.check(where, n) != nil && (bad == "" || n < bad) {
			bad = n
		}
	}
	if bad == "" {
		return nil
	}
	return f.check(where, bad)
}

// checkRaw is checkObject of a raw JSON object, read in one pass where
// its names are plain (no map is made); not an object is no error here.
func (f *fieldNames) checkRaw(where string, raw []byte) error {
	var bad []byte
	if chunk.Fields(raw, func(name, _ []byte) bool {
		if !f.exact[string(name)] && f.check("", string(name)) != nil {
			bad = name
		}
		return bad == nil
	}) {
		return nil
	}
	if bad != nil {
		return f.check(where, string(bad))
	}
	fields, _ := objectFields(raw)
	return f.checkObject(where, fields)
}

// foldName is encoding/json's: ASCII letters upper-cased, every other rune
// the smallest of its simple-folding orbit, so that foldName(a) ==
// foldName(b) exactly when bytes.EqualFold(a, b).
func foldName(s string) string {
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
var structNames sync.Map // reflect.Type → *fieldNames

// exactNames refuses a member of the object raw (at where, "" for the
// body) whose name folds to one of dst's (a pointer to a struct) fields
// without being it.
func exactNames(where string, raw []byte, dst any) error {
	t := reflect.TypeOf(dst).Elem()
	f, ok := structNames.Load(t)
	if !ok {
		var names []string
		for i := range t.NumField() {
			if n, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); n != "" && n != "-" {
				names = append(names, n)
			}
		}
		f, _ = structNames.LoadOrStore(t, newFieldNames(names...))
	}
	return f.(*fieldNames).checkRaw(where, raw)
}

// The members of each object obol reads, as OpenAI's API reference names
// them.
var (
	chatFields = newFieldNames("messages", "model", "audio", "frequency_penalty", "function_call", "functions",
		"logit_bias", "logprobs", "max_completion_tokens", "max_tokens", "metadata", "modalities", "n",
		"parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key", "prompt_cache_retention",
		"reasoning_effort", "response_format", "safety_identifier", "seed", "service_tier", "stop", "store",
		"stream", "stream_options", "temperature", "tool_choice", "tools", "top_logprobs", "top_p", "user",
		"verbosity", "web_search_options")
	completionFields = newFieldNames("model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias",
		"logprobs", "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix",
		"temperature", "top_p", "user")
	embeddingFields = newFieldNames("model", "input", "dimensions", "encoding_format", "user")
	responsesFields = newFieldNames("model", "input", "instructions", "max_output_tokens", "temperature", "top_p",
		"tools", "tool_choice", "parallel_tool_calls", "text", "stream", "store", "previous_response_id",
		"conversation", "user", "metadata", "background", "include", "max_tool_calls", "prompt",
		"prompt_cache_key", "reasoning", "safety_identifier", "service_tier", "stream_options", "top_logprobs",
		"truncation")
	messageFields       = newFieldNames("role", "content", "name", "tool_calls", "tool_call_id", "function_call", "refusal", "audio")
	partFields          = newFieldNames("type", "text", "image_url", "input_audio", "file", "refusal")
	streamOptionsFields = newFieldNames("include_usage", "include_obfuscation")
)
