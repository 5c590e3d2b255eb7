package sim

import "encoding/json"

// The worst case a byte-level tokenizer can bill, for tests of bounds.

// sampling are the request members a model does not read.
var sampling = map[string]bool{"model": true, "stream": true, "stream_options": true, "max_tokens": true,
	"max_completion_tokens": true, "n": true, "temperature": true, "top_p": true, "presence_penalty": true,
	"frequency_penalty": true, "seed": true, "user": true, "logprobs": true, "top_logprobs": true,
	"logit_bias": true, "parallel_tool_calls": true, "metadata": true, "store": true, "service_tier": true, "stop": true}

// Template tokens of the worst case: a chat template's per message (turn
// markers, role) and per request (the assistant's priming).
const (
	worstPerMessage = 4
	worstPerRequest = 3
	worstPerImage   = 85
)

// WorstPrompt is a chat request's prompt billed a token per byte of what
// the model reads, as a chat template renders it: each message's strings
// (role, content and parts' text, name, tool calls' ids, names and
// arguments parsed and rendered again as JSON, tool call ids) and
// template tokens, an image part at 85; every other member but the
// sampling ones (tools, tool_choice, response_format, …) rendered as JSON
// with a space after each ',' and ':' (Jinja's tojson) and '<', '>', '&'
// escaped (Go's encoding/json).
func WorstPrompt(body []byte) int {
	var fields map[string]json.RawMessage
	if json.Unmarshal(body, &fields) != nil {
		return 0
	}
	n := worstPerRequest
	for name, raw := range fields {
		switch {
		case name == "messages":
			var msgs []map[string]json.RawMessage
			json.Unmarshal(raw, &msgs)
			for _, m := range msgs {
				n += worstPerMessage + worstMessage(m)
			}
		case !sampling[name]:
			n += rendered(raw)
		}
	}
	return n
}

func worstMessage(m map[string]json.RawMessage) int {
	n := 0
	for name, raw := range m {
		switch name {
		case "content":
			var parts []map[string]json.RawMessage
			if json.Unmarshal(raw, &parts) == nil {
				for _, p := range parts {
					if _, img := p["image_url"]; img {
						n += worstPerImage
						continue
					}
					n += stringBytes(p["text"])
				}
				continue
			}
			n += stringBytes(raw)
		case "tool_calls":
			var calls []struct {
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			}
			json.Unmarshal(raw, &calls)
			for _, c := range calls {
				n += len(c.ID) + len(c.Function.Name) + rendered([]byte(c.Function.Arguments))
			}
		default:
			n += stringBytes(raw)
		}
	}
	return n
}

// stringBytes is the UTF-8 length of a JSON string (0 for another value).
func stringBytes(raw json.RawMessage) int {
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return 0
	}
	return len(s)
}

// rendered is the length of a JSON value rendered again, escaped as Go
// escapes it, with a space after each ',' and ':' outside its strings;
// text that is not JSON is its own length.
func rendered(raw []byte) int {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return len(raw)
	}
	out, _ := json.Marshal(v)
	n, in := len(out), false
	for i := 0; i < len(out); i++ {
		switch c := out[i]; {
		case in && c == '\\':
			i++
		case c == '"':
			in = !in
		case !in && (c == ',' || c == ':'):
			n++
		}
	}
	return n
}
