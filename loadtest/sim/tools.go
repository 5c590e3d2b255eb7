package sim

import (
	"encoding/json"
	"regexp"
	"strings"
)

// What the simulator calls when it is offered tools: the tool the last
// user's last turn names (the one named last), with arguments made from its
// schema; or else the first tool, with ToolArguments. So an agent asked
// to "use Read on `/tmp/notes.txt`" gets that call, and makes a round trip
// through its own tool.

// toolCall is the function to call and its arguments, when the model is
// to call one: tools were offered, tool_choice is not "none", and the
// last message is not a tool's result (then the model answers in text).
func toolCall(req *chatRequest) (name, args string) {
	if len(req.Tools) == 0 || string(req.ToolChoice) == `"none"` {
		return "", ""
	}
	n := len(req.Messages)
	if n > 0 && req.Messages[n-1].Role == "tool" {
		return "", ""
	}
	tools := make([]offered, len(req.Tools))
	for i, raw := range req.Tools {
		json.Unmarshal(raw, &tools[i])
	}
	for i := n - 1; i >= 0 && req.Messages[i].Role != "assistant"; i-- {
		if req.Messages[i].Role != "user" {
			continue // system text after the user's turn (as Claude Code sends it)
		}
		text := contentText(req.Messages[i].Content)
		if t := named(tools, text); t != nil {
			return t.Function.Name, t.arguments(text)
		}
		break
	}
	return tools[0].Function.Name, ToolArguments
}

type offered struct {
	Function struct {
		Name       string `json:"name"`
		Parameters struct {
			Properties map[string]struct {
				Type string `json:"type"`
			} `json:"properties"`
			Required []string `json:"required"`
		} `json:"parameters"`
	} `json:"function"`
}

// named is the offered tool whose name text mentions last, as a word.
func named(tools []offered, text string) *offered {
	var best *offered
	at := -1
	for i := range tools {
		name := tools[i].Function.Name
		if name == "" {
			continue
		}
		re := regexp.MustCompile(`\b` + regexp.QuoteMeta(name) + `\b`)
		if locs := re.FindAllStringIndex(text, -1); len(locs) > 0 && locs[len(locs)-1][0] > at {
			best, at = &tools[i], locs[len(locs)-1][0]
		}
	}
	return best
}

var quoted = regexp.MustCompile("`([^`]+)`")

// arguments are the tool's required parameters: a string is the last
// `quoted` span of text (or "sim"), a number 1, a boolean false, an
// array or object empty.
func (t *offered) arguments(text string) string {
	str := "sim"
	if m := quoted.FindAllStringSubmatch(text, -1); len(m) > 0 {
		str = m[len(m)-1][1]
	}
	args := map[string]any{}
	for _, name := range t.Function.Parameters.Required {
		switch t.Function.Parameters.Properties[name].Type {
		case "integer", "number":
			args[name] = 1
		case "boolean":
			args[name] = false
		case "array":
			args[name] = []any{}
		case "object":
			args[name] = map[string]any{}
		default:
			args[name] = str
		}
	}
	b, _ := json.Marshal(args)
	return string(b)
}

// contentText is a message's text: its string, or its text parts'.
func contentText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	json.Unmarshal(raw, &parts)
	var b strings.Builder
	for _, p := range parts {
		if p.Type == "text" {
			b.WriteString(p.Text)
			b.WriteString("\n")
		}
	}
	return b.String()
}
