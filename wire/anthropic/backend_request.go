package anthropic

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/jsonobj"
)

// Toward an Anthropic backend: the Chat Completions body obol would send
// an OpenAI backend, written as a Messages request.

// messagesRequest is the Messages request a chat body becomes, its
// members in this order.
type messagesRequest struct {
	MaxTokens     int               `json:"max_tokens"`
	System        []textOut         `json:"system,omitempty"`
	Messages      []outMessage      `json:"messages"`
	StopSequences []string          `json:"stop_sequences,omitempty"`
	Temperature   json.RawMessage   `json:"temperature,omitempty"`
	TopP          json.RawMessage   `json:"top_p,omitempty"`
	TopK          json.RawMessage   `json:"top_k,omitempty"`
	Metadata      *metadata         `json:"metadata,omitempty"`
	Tools         []json.RawMessage `json:"tools,omitempty"`
	ToolChoice    map[string]any    `json:"tool_choice,omitempty"`
	Stream        bool              `json:"stream,omitempty"`
}

type textOut struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type toolUseOut struct {
	Type  string          `json:"type"`
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
}

type toolResultOut struct {
	Type      string `json:"type"`
	ToolUseID string `json:"tool_use_id"`
	Content   string `json:"content"`
}

type toolOut struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`
}

type outMessage struct {
	Role    string `json:"role"`
	Content []any  `json:"content"`
}

// chatBody is what FromChat reads of a chat body.
type chatBody struct {
	Messages            []inMessage     `json:"messages"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Stop                json.RawMessage `json:"stop"`
	Temperature         json.RawMessage `json:"temperature"`
	TopP                json.RawMessage `json:"top_p"`
	TopK                json.RawMessage `json:"top_k"`
	User                *string         `json:"user"`
	Tools               []struct {
		Type     string `json:"type"`
		Function struct {
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Parameters  json.RawMessage `json:"parameters"`
		} `json:"function"`
	} `json:"tools"`
	ToolChoice        json.RawMessage `json:"tool_choice"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls"`
	N                 *int            `json:"n"`
	Stream            bool            `json:"stream"`
}

type inMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []toolCall      `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

// untranslatable are the chat members an Anthropic backend has no
// equivalent for: a 400 naming them, not a silent change of meaning.
var untranslatable = map[string]string{
	"logprobs":     "log probabilities are not served by Anthropic's Messages API",
	"top_logprobs": "log probabilities are not served by Anthropic's Messages API",
	"logit_bias":   "logit_bias has no equivalent in Anthropic's Messages API",
	"response_format": "response_format has no equivalent in Anthropic's Messages API; " +
		"ask for the format in the prompt or define a tool whose input is the schema",
	"audio":      "audio output is not served by Anthropic's Messages API",
	"modalities": "output modalities are not served by Anthropic's Messages API",
	"prediction": "predicted outputs are not served by Anthropic's Messages API",
	"functions":  "functions (the legacy form) are not translated: send tools",
}

// FromChat writes a chat body (openai.Request.UpstreamBody: no model,
// max_tokens set) as the Messages request an Anthropic backend takes.
// What cannot be translated is a 400 naming it; hints with no Messages
// field that change nothing billed (seed, presence_penalty, …) go unsent.
func FromChat(body []byte) ([]byte, error) {
	fields, err := jsonobj.Members(body)
	if err != nil {
		return nil, apierr.BadRequest("", "the request body is not a JSON object")
	}
	for name := range fields {
		if why, ok := untranslatable[name]; ok {
			return nil, apierr.BadRequest(name, "this model's backend speaks Anthropic's Messages API: "+why)
		}
	}
	var cb chatBody
	if err := json.Unmarshal(body, &cb); err != nil {
		return nil, apierr.BadRequest("", "the request body could not be read: "+err.Error())
	}
	if cb.N != nil && *cb.N > 1 {
		return nil, apierr.BadRequest("n", "this model's backend speaks Anthropic's Messages API, which answers one choice: n must be 1")
	}
	out := &messagesRequest{Temperature: cb.Temperature, TopP: cb.TopP, TopK: cb.TopK, Stream: cb.Stream}
	switch {
	case cb.MaxTokens != nil:
		out.MaxTokens = *cb.MaxTokens
	case cb.MaxCompletionTokens != nil:
		out.MaxTokens = *cb.MaxCompletionTokens
	}
	if out.MaxTokens <= 0 {
		return nil, apierr.BadRequest("max_tokens", "an Anthropic backend needs an output cap: set max_tokens")
	}
	if cb.MaxCompletionTokens != nil && *cb.MaxCompletionTokens > out.MaxTokens {
		out.MaxTokens = *cb.MaxCompletionTokens
	}
	if cb.User != nil {
		out.Metadata = &metadata{UserID: cb.User}
	}
	if out.StopSequences, err = stopSequences(cb.Stop); err != nil {
		return nil, err
	}
	if err := out.translateMessages(cb.Messages); err != nil {
		return nil, err
	}
	if err := out.translateTools(&cb); err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

func stopSequences(raw json.RawMessage) ([]string, error) {
	if !present(raw) {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, apierr.BadRequest("stop", "stop must be a string or an array of strings")
	}
	return many, nil
}

// translateMessages turns chat messages into system text and alternating
// user and assistant turns: tool results become a user turn's
// tool_result blocks, and turns of one role in a row are joined.
func (out *messagesRequest) translateMessages(msgs []inMessage) error {
	for i, m := range msgs {
		where := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "developer":
			text, err := chatText(where, m.Content)
			if err != nil {
				return err
			}
			if text != "" {
				out.System = append(out.System, textOut{Type: "text", Text: text})
			}
		case "user":
			blocks, err := userBlocks(where, m.Content)
			if err != nil {
				return err
			}
			out.add("user", blocks)
		case "assistant":
			blocks, err := assistantBlocks(where, &m)
			if err != nil {
				return err
			}
			out.add("assistant", blocks)
		case "tool":
			text, err := chatText(where, m.Content)
			if err != nil {
				return err
			}
			out.add("user", []any{toolResultOut{Type: "tool_result", ToolUseID: m.ToolCallID, Content: text}})
		default:
			return apierr.BadRequest(where+".role", fmt.Sprintf("the role %q is not translated to Anthropic's Messages API", clip.String(m.Role, 40)))
		}
	}
	if len(out.Messages) == 0 {
		return apierr.BadRequest("messages", "an Anthropic backend needs at least one user or assistant message")
	}
	return nil
}

// add appends blocks as a turn of role, joining them to the last turn
// when it is of the same role (the Messages API alternates).
func (out *messagesRequest) add(role string, blocks []any) {
	if len(blocks) == 0 {
		return
	}
	if n := len(out.Messages); n > 0 && out.Messages[n-1].Role == role {
		out.Messages[n-1].Content = append(out.Messages[n-1].Content, blocks...)
		return
	}
	out.Messages = append(out.Messages, outMessage{Role: role, Content: blocks})
}

// chatPart is a chat content part.
type chatPartIn struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
}

// chatText is a message's content as text: a string, or text parts.
func chatText(where string, raw json.RawMessage) (string, error) {
	if !present(raw) {
		return "", nil
	}
	if s, err := jsonobj.String(raw); err == nil {
		return s, nil
	}
	var parts []chatPartIn
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", apierr.BadRequest(where+".content", "content must be a string or an array of content parts")
	}
	var b strings.Builder
	for j, p := range parts {
		if p.Type != "text" {
			return "", apierr.BadRequest(fmt.Sprintf("%s.content[%d].type", where, j), "only text parts are translated here")
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

// userBlocks are a user message's text and images as Messages blocks.
func userBlocks(where string, raw json.RawMessage) ([]any, error) {
	if s, err := jsonobj.String(raw); err == nil {
		if s == "" {
			return nil, nil
		}
		return []any{textOut{Type: "text", Text: s}}, nil
	}
	var parts []chatPartIn
	if err := json.Unmarshal(raw, &parts); err != nil {
		return nil, apierr.BadRequest(where+".content", "content must be a string or an array of content parts")
	}
	var out []any
	for j, p := range parts {
		switch {
		case p.Type == "text":
			out = append(out, textOut{Type: "text", Text: p.Text})
		case p.Type == "image_url" && p.ImageURL != nil:
			out = append(out, imageBlock(p.ImageURL.URL))
		default:
			return nil, apierr.BadRequest(fmt.Sprintf("%s.content[%d].type", where, j),
				fmt.Sprintf("the part type %q is not translated to Anthropic's Messages API", clip.String(p.Type, 40)))
		}
	}
	return out, nil
}

// imageBlock is an image part's URL as an image block: a data URL's
// bytes as base64, any other URL by reference.
func imageBlock(url string) map[string]any {
	if rest, ok := strings.CutPrefix(url, "data:"); ok {
		if mediaType, data, ok := strings.Cut(rest, ";base64,"); ok {
			return map[string]any{"type": "image", "source": map[string]any{"type": "base64", "media_type": mediaType, "data": data}}
		}
	}
	return map[string]any{"type": "image", "source": map[string]any{"type": "url", "url": url}}
}

// assistantBlocks are an assistant message's text and tool calls.
func assistantBlocks(where string, m *inMessage) ([]any, error) {
	text, err := chatText(where, m.Content)
	if err != nil {
		return nil, err
	}
	var out []any
	if text != "" {
		out = append(out, textOut{Type: "text", Text: text})
	}
	for j, tc := range m.ToolCalls {
		input := json.RawMessage(tc.Function.Arguments)
		if strings.TrimSpace(tc.Function.Arguments) == "" {
			input = json.RawMessage("{}")
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(input, &obj) != nil {
			return nil, apierr.BadRequest(fmt.Sprintf("%s.tool_calls[%d].function.arguments", where, j),
				"an Anthropic backend takes a tool call's arguments as a JSON object")
		}
		out = append(out, toolUseOut{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	return out, nil
}

// translateTools writes the chat tools and tool choice in Anthropic's
// terms: parameters become input_schema, "required" becomes "any".
func (out *messagesRequest) translateTools(cb *chatBody) error {
	for i, t := range cb.Tools {
		if t.Type != "function" {
			return apierr.BadRequest(fmt.Sprintf("tools[%d].type", i), "only function tools are translated to Anthropic's Messages API")
		}
		schema := t.Function.Parameters
		if !present(schema) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		tool, _ := json.Marshal(toolOut{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
		out.Tools = append(out.Tools, tool)
	}
	if present(cb.ToolChoice) {
		var s string
		var named struct {
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		switch {
		case json.Unmarshal(cb.ToolChoice, &s) == nil:
			kind, ok := map[string]string{"auto": "auto", "none": "none", "required": "any"}[s]
			if !ok {
				return apierr.BadRequest("tool_choice", "tool_choice must be auto, none, required or a named function")
			}
			out.ToolChoice = map[string]any{"type": kind}
		case json.Unmarshal(cb.ToolChoice, &named) == nil && named.Function.Name != "":
			out.ToolChoice = map[string]any{"type": "tool", "name": named.Function.Name}
		default:
			return apierr.BadRequest("tool_choice", "tool_choice must be auto, none, required or a named function")
		}
	}
	if cb.ParallelToolCalls != nil && !*cb.ParallelToolCalls && len(out.Tools) > 0 {
		if out.ToolChoice == nil {
			out.ToolChoice = map[string]any{"type": "auto"}
		}
		if out.ToolChoice["type"] != "none" {
			out.ToolChoice["disable_parallel_tool_use"] = true
		}
	}
	return nil
}
