package openai

import (
	"unicode/utf8"

	"github.com/obol/obol/internal/jsonobj"
)

// What a request's prompt can cost, measured two ways over the same
// complete text — every member of the body the model may read:
//
//   - the bound, for money: no byte-level tokenizer (BPE over bytes, as
//     every current model's) makes more tokens of a text than it has
//     UTF-8 bytes, and a JSON value's raw bytes are at least the UTF-8
//     bytes of every string in it (an escape is longer than what it
//     stands for; the body must be UTF-8), so the raw length of what the
//     model reads, widened to its longest JSON rendering (add), bounds
//     its tokens, plus the chat template's own tokens and a fixed
//     allowance per image;
//   - the estimate, for rate limits and the context window: four ASCII
//     bytes a token and a token per other character (CJK, emoji), as
//     current tokenizers roughly count, over the same bytes.

// Template tokens the bound allows beyond the text: a chat template adds
// a few tokens per message (turn markers, the role) and per request (the
// assistant's priming, a default system preamble); a tokenizer adds
// begin and end tokens to each prompt or input.
const (
	templatePerMessage = 8
	templatePerRequest = 32
	templatePerInput   = 2
)

// promptText measures what the model reads.
type promptText struct {
	bytes int // UTF-8 bytes
	ascii int // of which ASCII
	wide  int // characters that are not ASCII
	// exact are tokens given as token ids: counted as they are.
	exact int
}

// add measures raw, as the model reads it: its bytes as its longest
// common JSON rendering has them, for a template renders tools, schemas
// and tool-call arguments as JSON: a ',' or ':' may be followed by a space
// (Python's json.dumps, Jinja's tojson), and '<', '>' and '&' may be
// escaped as \u003c, and U+2028 and U+2029 as \u2028 (Go's
// encoding/json).
func (p *promptText) add(raw []byte) {
	p.bytes += len(raw)
	for i, b := range raw {
		switch {
		case b == ',' || b == ':':
			p.bytes++
			p.ascii++
		case b == '<' || b == '>' || b == '&':
			p.bytes += 5
			p.ascii++
		case b < utf8.RuneSelf:
			p.ascii++
		case b >= 0xC0: // a multi-byte character's first byte
			p.wide++
			if b == 0xE2 && i+2 < len(raw) && raw[i+1] == 0x80 && (raw[i+2] == 0xA8 || raw[i+2] == 0xA9) {
				p.bytes += 3
			}
		}
	}
}

// sub takes raw back out of the measure (an image part, counted as an
// image instead).
func (p *promptText) sub(raw []byte) {
	var q promptText
	q.add(raw)
	p.bytes -= q.bytes
	p.ascii -= q.ascii
	p.wide -= q.wide
}

// estimate is the realistic token count of the text.
func (p *promptText) estimate() int { return p.exact + (p.ascii+3)/4 + p.wide }

// bound is the most tokens the text can be.
func (p *promptText) bound() int { return p.exact + p.bytes }

// set is a set of member names.
func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// bodyShape is what the gateway knows of an API's request body: the
// members it names (a member that only folds to one is refused) and
// those the model does not read or that are measured on their own.
type bodyShape struct {
	names  *jsonobj.Names
	unread map[string]bool
}

// The body shapes of the APIs that call a model.
var (
	chatShape       = bodyShape{chatFields, chatUnread}
	completionShape = bodyShape{completionFields, completionUnread}
	embeddingShape  = bodyShape{embeddingFields, embeddingUnread}
)

// Members the model does not read, or that are measured on their own
// (messages, a prompt, an input), by API. Every other member counts at
// its raw length: tools, tool_choice, response_format, functions, and any
// member obol does not know (a backend may render chat_template_kwargs
// or documents into the prompt).
var (
	chatUnread = set("model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n",
		"temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "user", "logprobs",
		"top_logprobs", "logit_bias", "parallel_tool_calls", "metadata", "store", "service_tier", "stop",
		"safety_identifier", "prompt_cache_key", "prompt_cache_retention", "reasoning_effort", "verbosity",
		"modalities")
	completionUnread = set("model", "prompt", "stream", "stream_options", "max_tokens", "n", "best_of",
		"temperature", "top_p", "presence_penalty", "frequency_penalty", "seed", "user", "logprobs", "logit_bias",
		"echo", "stop")
	embeddingUnread = set("model", "input", "encoding_format", "dimensions", "user")
)
