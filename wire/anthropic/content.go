package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/jsonobj"
)

// A Messages request's turns and content blocks, as Chat Completions
// messages: system text in place (top-level first), user text and
// images, tool results as tool messages, assistant text and tool calls.

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// block is a content block, of any type; each type uses some members.
type block struct {
	Type         string          `json:"type"`
	Text         *string         `json:"text"`
	Source       json.RawMessage `json:"source"`
	ID           string          `json:"id"`
	Name         string          `json:"name"`
	Input        json.RawMessage `json:"input"`
	ToolUseID    string          `json:"tool_use_id"`
	Content      json.RawMessage `json:"content"`
	IsError      bool            `json:"is_error"`
	CacheControl json.RawMessage `json:"cache_control"`
	Citations    json.RawMessage `json:"citations"`
	Thinking     string          `json:"thinking"`
	Signature    string          `json:"signature"`
	Data         string          `json:"data"`
	Title        string          `json:"title"`
	Context      string          `json:"context"`
}

type source struct {
	Type      string `json:"type"`
	MediaType string `json:"media_type"`
	Data      string `json:"data"`
	URL       string `json:"url"`
	FileID    string `json:"file_id"`
}

type chatMessage struct {
	Role       string         `json:"role"`
	Content    any            `json:"content"` // a string, []chatPart, or nil beside tool calls
	ToolCalls  []chatToolCall `json:"tool_calls,omitempty"`
	ToolCallID string         `json:"tool_call_id,omitempty"`
}

type chatPart struct {
	Type     string     `json:"type"`
	Text     *string    `json:"text,omitempty"`
	ImageURL *chatImage `json:"image_url,omitempty"`
}

type chatImage struct {
	URL string `json:"url"`
}

type chatToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function chatCallFunc `json:"function"`
}

type chatCallFunc struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// notServed are the block types no backend of obol's can take, and
// why (documents and search results go to Anthropic backends alone:
// documents.go).
var notServed = map[string]string{
	"container_upload":           "container_upload blocks are not served: obol's backends run no code",
	"server_tool_use":            "server tools are not served: obol's backends run no tools themselves",
	"web_search_tool_result":     "server tools are not served: obol's backends run no tools themselves",
	"web_fetch_tool_result":      "server tools are not served: obol's backends run no tools themselves",
	"code_execution_tool_result": "server tools are not served: obol's backends run no tools themselves",
	"mcp_tool_use":               "MCP tools are not served: obol's backends call no tools themselves",
	"mcp_tool_result":            "MCP tools are not served: obol's backends call no tools themselves",
}

// messages are ar's system text and turns as Chat Completions messages.
func (ar *Request) messages() ([]chatMessage, error) {
	var out []chatMessage
	if present(ar.System) {
		text, err := systemText("system", ar.System)
		if err != nil {
			return nil, err
		}
		out = append(out, chatMessage{Role: "system", Content: text})
	}
	for i, raw := range ar.Messages {
		where := fmt.Sprintf("messages.%d", i)
		var m message
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, apierr.BadRequest(where, "each message must be an object with a role and content")
		}
		if err := jsonobj.ExactNames(where, raw, &m); err != nil {
			return nil, err
		}
		if !present(m.Content) {
			return nil, apierr.BadRequest(where+".content", "missing required parameter: "+where+".content")
		}
		var err error
		switch m.Role {
		case "user":
			out, err = ar.appendUser(out, where+".content", m.Content)
		case "assistant":
			out, err = appendAssistant(out, where+".content", m.Content)
		case "system":
			var text string
			if text, err = systemText(where+".content", m.Content); err == nil {
				out = append(out, chatMessage{Role: "system", Content: text})
			}
		default:
			err = apierr.BadRequest(where+".role", fmt.Sprintf("unknown role %q: use user or assistant (or system)", clip.String(m.Role, 40)))
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// blocks reads content: a string is one text block.
func blocks(where string, raw json.RawMessage) ([]block, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []block{{Type: "text", Text: &s}}, nil
	}
	elems, ok := jsonobj.Elements(raw)
	if !ok {
		return nil, apierr.BadRequest(where, where+" must be a string or an array of content blocks")
	}
	out := make([]block, len(elems))
	for j, e := range elems {
		at := fmt.Sprintf("%s.%d", where, j)
		if err := json.Unmarshal(e, &out[j]); err != nil {
			return nil, apierr.BadRequest(at, "each content block must be an object with a type")
		}
		if err := jsonobj.ExactNames(at, e, &out[j]); err != nil {
			return nil, err
		}
		b := &out[j]
		if why, ok := notServed[b.Type]; ok {
			return nil, apierr.BadRequest(at+".type", why)
		}
		if b.Type == "text" && b.Text == nil {
			return nil, apierr.BadRequest(at+".text", "missing required parameter: "+at+".text")
		}
	}
	return out, nil
}

// systemText is system content's text, its blocks joined by a blank line.
func systemText(where string, raw json.RawMessage) (string, error) {
	bs, err := blocks(where, raw)
	if err != nil {
		return "", err
	}
	texts := make([]string, 0, len(bs))
	for j, b := range bs {
		if b.Type != "text" {
			return "", apierr.BadRequest(fmt.Sprintf("%s.%d.type", where, j), "system content takes text blocks only")
		}
		texts = append(texts, *b.Text)
	}
	return strings.Join(texts, "\n\n"), nil
}

// appendUser appends a user turn: its tool results first, as tool
// messages (Chat Completions wants them right after the assistant's
// calls), then its text and images, with any images the tool results
// carried, as one user message.
func (ar *Request) appendUser(out []chatMessage, where string, raw json.RawMessage) ([]chatMessage, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return append(out, chatMessage{Role: "user", Content: s}), nil
	}
	bs, err := blocks(where, raw)
	if err != nil {
		return nil, err
	}
	var parts []chatPart
	for j, b := range bs {
		at := fmt.Sprintf("%s.%d", where, j)
		switch b.Type {
		case "text":
			parts = append(parts, chatPart{Type: "text", Text: b.Text})
		case "image":
			p, err := imagePart(at+".source", b.Source)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		case "tool_result":
			msg, images, err := toolResult(at, &b)
			if err != nil {
				return nil, err
			}
			out = append(out, msg)
			parts = append(parts, images...)
		case "document", "search_result":
			p, err := ar.documentPart(at, &b)
			if err != nil {
				return nil, err
			}
			parts = append(parts, p)
		case "thinking", "redacted_thinking":
		default:
			return nil, apierr.BadRequest(at+".type", fmt.Sprintf("a user turn takes text, image, document and tool_result blocks, not %q", clip.String(b.Type, 40)))
		}
	}
	if len(parts) > 0 || len(bs) == 0 {
		out = append(out, chatMessage{Role: "user", Content: userContent(parts)})
	}
	return out, nil
}

// userContent is parts as a user message's content: a string where they
// are all text, as every backend takes.
func userContent(parts []chatPart) any {
	var b strings.Builder
	for i, p := range parts {
		if p.Type != "text" {
			return parts
		}
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString(*p.Text)
	}
	return b.String()
}

// imagePart is an image block's source as an image_url part: base64 data
// as a data URL, or the URL.
func imagePart(where string, raw json.RawMessage) (chatPart, error) {
	var src source
	if !present(raw) || json.Unmarshal(raw, &src) != nil {
		return chatPart{}, apierr.BadRequest(where, `an image needs a source: {"type":"base64","media_type":…,"data":…} or {"type":"url","url":…}`)
	}
	if err := jsonobj.ExactNames(where, raw, &src); err != nil {
		return chatPart{}, err
	}
	switch {
	case src.Type == "base64" && src.MediaType != "" && src.Data != "":
		return chatPart{Type: "image_url", ImageURL: &chatImage{URL: "data:" + src.MediaType + ";base64," + src.Data}}, nil
	case src.Type == "url" && src.URL != "":
		return chatPart{Type: "image_url", ImageURL: &chatImage{URL: src.URL}}, nil
	case src.Type == "file":
		return chatPart{}, apierr.BadRequest(where+".type", "file sources are not served (obol has no Files API): send the image as base64 or a URL")
	}
	return chatPart{}, apierr.BadRequest(where, `an image source is {"type":"base64","media_type":…,"data":…} or {"type":"url","url":…}`)
}

// toolResult is a tool_result block as a tool message, and the images
// its content carried (a tool message takes text only). An error result
// says so in its text: Chat Completions has no flag for it.
func toolResult(where string, b *block) (chatMessage, []chatPart, error) {
	if b.ToolUseID == "" {
		return chatMessage{}, nil, apierr.BadRequest(where+".tool_use_id", "missing required parameter: "+where+".tool_use_id")
	}
	var texts []string
	var images []chatPart
	if present(b.Content) {
		bs, err := blocks(where+".content", b.Content)
		if err != nil {
			return chatMessage{}, nil, err
		}
		for j, c := range bs {
			switch c.Type {
			case "text":
				texts = append(texts, *c.Text)
			case "image":
				p, err := imagePart(fmt.Sprintf("%s.content.%d.source", where, j), c.Source)
				if err != nil {
					return chatMessage{}, nil, err
				}
				images = append(images, p)
			default:
				return chatMessage{}, nil, apierr.BadRequest(fmt.Sprintf("%s.content.%d.type", where, j), "a tool result takes text and image blocks")
			}
		}
	}
	text := strings.Join(texts, "\n")
	if b.IsError {
		text = "Error: " + text
	}
	return chatMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: text}, images, nil
}

// appendAssistant appends an assistant turn: its text, and its tool_use
// blocks as tool calls; thinking is dropped (a Chat Completions backend
// cannot read it back).
func appendAssistant(out []chatMessage, where string, raw json.RawMessage) ([]chatMessage, error) {
	bs, err := blocks(where, raw)
	if err != nil {
		return nil, err
	}
	var text strings.Builder
	var calls []chatToolCall
	for j, b := range bs {
		at := fmt.Sprintf("%s.%d", where, j)
		switch b.Type {
		case "text":
			text.WriteString(*b.Text)
		case "tool_use":
			call, err := chatCall(at, &b)
			if err != nil {
				return nil, err
			}
			calls = append(calls, call)
		case "thinking", "redacted_thinking":
		default:
			return nil, apierr.BadRequest(at+".type", fmt.Sprintf("an assistant turn takes text, tool_use and thinking blocks, not %q", clip.String(b.Type, 40)))
		}
	}
	m := chatMessage{Role: "assistant", Content: text.String(), ToolCalls: calls}
	if text.Len() == 0 && len(calls) > 0 {
		m.Content = nil
	}
	return append(out, m), nil
}

// chatCall is a tool_use block as a Chat Completions tool call, its input
// as the arguments' JSON.
func chatCall(where string, b *block) (chatToolCall, error) {
	if b.ID == "" || b.Name == "" {
		return chatToolCall{}, apierr.BadRequest(where, "a tool_use block needs its id and name")
	}
	args := "{}"
	if present(b.Input) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, b.Input); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
			return chatToolCall{}, apierr.BadRequest(where+".input", "a tool_use block's input must be an object")
		}
		args = buf.String()
	}
	return chatToolCall{ID: b.ID, Type: "function", Function: chatCallFunc{Name: b.Name, Arguments: args}}, nil
}
