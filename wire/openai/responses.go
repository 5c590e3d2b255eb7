package openai

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/jsonobj"
)

// ResponsesRequest is what the gateway reads of a Responses request; the
// fields it echoes in the response object are kept as they came.
type ResponsesRequest struct {
	Model             string            `json:"model"`
	Input             json.RawMessage   `json:"input"`
	Instructions      json.RawMessage   `json:"instructions"`
	MaxOutputTokens   json.RawMessage   `json:"max_output_tokens"`
	Temperature       json.RawMessage   `json:"temperature"`
	TopP              json.RawMessage   `json:"top_p"`
	Tools             []json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls json.RawMessage   `json:"parallel_tool_calls"`
	Text              *struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	Stream             bool            `json:"stream"`
	Store              *bool           `json:"store"`
	PreviousResponseID *string         `json:"previous_response_id"`
	Conversation       json.RawMessage `json:"conversation"`
	User               json.RawMessage `json:"user"`
	Metadata           json.RawMessage `json:"metadata"`
}

// TranslateResponses reads a Responses request and writes the Chat
// Completions request that carries it.
func TranslateResponses(body []byte) (*ResponsesRequest, []byte, error) {
	var rr ResponsesRequest
	if !utf8.Valid(body) {
		return nil, nil, apierr.BadRequest("", "the request body is not valid UTF-8 (JSON must be)")
	}
	if err := json.Unmarshal(body, &rr); err != nil {
		return nil, nil, apierr.BadRequest("", "the request body must be a JSON object of the Responses API: "+err.Error())
	}
	if fields, err := jsonobj.Members(body); err == nil {
		if err := responsesFields.CheckObject("", fields); err != nil {
			return nil, nil, err
		}
	}
	switch {
	case rr.Store != nil && *rr.Store:
		return nil, nil, apierr.BadRequest("store", "obol stores no responses: send store: false, or leave it out")
	case rr.PreviousResponseID != nil && *rr.PreviousResponseID != "":
		return nil, nil, apierr.BadRequest("previous_response_id", "obol stores no responses, so previous_response_id cannot be followed: send the whole conversation as input")
	case len(rr.Conversation) > 0 && !jsonobj.IsNull(rr.Conversation):
		return nil, nil, apierr.BadRequest("conversation", "obol stores no conversations: send the whole conversation as input")
	}
	msgs, err := rr.messages()
	if err != nil {
		return nil, nil, err
	}
	chat := map[string]any{"model": rr.Model, "messages": msgs}
	for name, v := range map[string]json.RawMessage{"max_tokens": rr.MaxOutputTokens, "temperature": rr.Temperature,
		"top_p": rr.TopP, "parallel_tool_calls": rr.ParallelToolCalls, "user": rr.User} {
		if len(v) > 0 && !jsonobj.IsNull(v) {
			chat[name] = v
		}
	}
	if err := rr.translateTools(chat); err != nil {
		return nil, nil, err
	}
	if rr.Text != nil && len(rr.Text.Format) > 0 {
		if err := translateFormat(rr.Text.Format, chat); err != nil {
			return nil, nil, err
		}
	}
	if rr.Stream {
		chat["stream"] = true
	}
	out, err := json.Marshal(chat)
	return &rr, out, err
}

// translateTools turns function tools into Chat Completions' and the tool
// choice with them; the hosted tools (web search, files, …) are refused.
func (rr *ResponsesRequest) translateTools(chat map[string]any) error {
	var tools []any
	for i, raw := range rr.Tools {
		var t struct {
			Type        string          `json:"type"`
			Name        string          `json:"name"`
			Description string          `json:"description,omitempty"`
			Parameters  json.RawMessage `json:"parameters,omitempty"`
			Strict      *bool           `json:"strict,omitempty"`
		}
		if json.Unmarshal(raw, &t) != nil || t.Type != "function" || t.Name == "" {
			return apierr.BadRequest(fmt.Sprintf("tools[%d]", i), "obol serves function tools only ({\"type\":\"function\",\"name\":…}); hosted tools need OpenAI's servers")
		}
		fn := map[string]any{"name": t.Name}
		if t.Description != "" {
			fn["description"] = t.Description
		}
		if len(t.Parameters) > 0 && !jsonobj.IsNull(t.Parameters) {
			fn["parameters"] = t.Parameters
		}
		if t.Strict != nil {
			fn["strict"] = *t.Strict
		}
		tools = append(tools, map[string]any{"type": "function", "function": fn})
	}
	if len(tools) > 0 {
		chat["tools"] = tools
	}
	if len(rr.ToolChoice) == 0 || jsonobj.IsNull(rr.ToolChoice) {
		return nil
	}
	var mode string
	if json.Unmarshal(rr.ToolChoice, &mode) == nil {
		chat["tool_choice"] = mode
		return nil
	}
	var tc struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if json.Unmarshal(rr.ToolChoice, &tc) != nil || tc.Type != "function" || tc.Name == "" {
		return apierr.BadRequest("tool_choice", "tool_choice must be auto, none, required, or {\"type\":\"function\",\"name\":…}")
	}
	chat["tool_choice"] = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
	return nil
}

// translateFormat turns text.format into response_format.
func translateFormat(raw json.RawMessage, chat map[string]any) error {
	var f struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description,omitempty"`
		Schema      json.RawMessage `json:"schema"`
		Strict      *bool           `json:"strict,omitempty"`
	}
	if json.Unmarshal(raw, &f) != nil {
		return apierr.BadRequest("text.format", "text.format must be an object with a type")
	}
	switch f.Type {
	case "text", "":
	case "json_object":
		chat["response_format"] = map[string]string{"type": "json_object"}
	case "json_schema":
		js := map[string]any{"name": f.Name, "schema": f.Schema}
		if f.Description != "" {
			js["description"] = f.Description
		}
		if f.Strict != nil {
			js["strict"] = *f.Strict
		}
		chat["response_format"] = map[string]any{"type": "json_schema", "json_schema": js}
	default:
		return apierr.BadRequest("text.format.type", "text.format.type must be text, json_object or json_schema")
	}
	return nil
}

// inputItem is one item of a Responses input: a message, a function call
// the model made, or a function's output.
type inputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
}

// messages turns instructions and input into Chat Completions messages.
// Item references and reasoning items, which only a store could resolve,
// are left out.
func (rr *ResponsesRequest) messages() ([]map[string]any, error) {
	var msgs []map[string]any
	var instructions string
	if len(rr.Instructions) > 0 && !jsonobj.IsNull(rr.Instructions) {
		if json.Unmarshal(rr.Instructions, &instructions) != nil {
			return nil, apierr.BadRequest("instructions", "instructions must be a string")
		}
		msgs = append(msgs, map[string]any{"role": "system", "content": instructions})
	}
	var text string
	if json.Unmarshal(rr.Input, &text) == nil {
		return append(msgs, map[string]any{"role": "user", "content": text}), nil
	}
	var items []inputItem
	if json.Unmarshal(rr.Input, &items) != nil || len(items) == 0 {
		return nil, apierr.BadRequest("input", "input must be a string or a non-empty array of input items")
	}
	for i, it := range items {
		param := fmt.Sprintf("input[%d]", i)
		switch it.Type {
		case "message", "":
			m, err := inputMessage(it, param)
			if err != nil {
				return nil, err
			}
			msgs = append(msgs, m)
		case "function_call":
			msgs = appendToolCall(msgs, it)
		case "function_call_output":
			msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": it.CallID, "content": outputText(it.Output)})
		case "item_reference", "reasoning":
		default:
			return nil, apierr.BadRequest(param+".type", fmt.Sprintf("obol does not serve %q input items: messages, function_call and function_call_output", it.Type))
		}
	}
	return msgs, nil
}

// inputMessage turns a message item into a chat message: text parts join,
// images become image_url parts.
func inputMessage(it inputItem, param string) (map[string]any, error) {
	switch it.Role {
	case "system", "developer", "user", "assistant":
	default:
		return nil, apierr.BadRequest(param+".role", "role must be system, developer, user or assistant")
	}
	var text string
	if json.Unmarshal(it.Content, &text) == nil {
		return map[string]any{"role": it.Role, "content": text}, nil
	}
	var parts []struct {
		Type     string          `json:"type"`
		Text     string          `json:"text"`
		Refusal  string          `json:"refusal"`
		ImageURL json.RawMessage `json:"image_url"`
		Detail   string          `json:"detail"`
	}
	if json.Unmarshal(it.Content, &parts) != nil {
		return nil, apierr.BadRequest(param+".content", "content must be a string or an array of content parts")
	}
	var out []any
	var texts []string
	for j, p := range parts {
		switch p.Type {
		case "input_text", "output_text":
			texts = append(texts, p.Text)
			out = append(out, map[string]string{"type": "text", "text": p.Text})
		case "refusal":
			texts = append(texts, p.Refusal)
		case "input_image":
			var url string
			if json.Unmarshal(p.ImageURL, &url) != nil || url == "" {
				return nil, apierr.BadRequest(fmt.Sprintf("%s.content[%d].image_url", param, j), "an input_image needs an image_url (a URL or a data: URL); file ids need OpenAI's file store")
			}
			img := map[string]string{"url": url}
			if p.Detail != "" {
				img["detail"] = p.Detail
			}
			out = append(out, map[string]any{"type": "image_url", "image_url": img})
		default:
			return nil, apierr.BadRequest(fmt.Sprintf("%s.content[%d].type", param, j), fmt.Sprintf("obol does not serve %q content parts: input_text, output_text, input_image", p.Type))
		}
	}
	if it.Role == "assistant" || it.Role == "system" || it.Role == "developer" {
		return map[string]any{"role": it.Role, "content": strings.Join(texts, "")}, nil
	}
	return map[string]any{"role": it.Role, "content": out}, nil
}

// appendToolCall adds a function call to the assistant message before it,
// or starts one: consecutive calls are one turn of parallel calls.
func appendToolCall(msgs []map[string]any, it inputItem) []map[string]any {
	call := map[string]any{"id": it.CallID, "type": "function", "function": map[string]string{"name": it.Name, "arguments": it.Arguments}}
	if n := len(msgs); n > 0 && msgs[n-1]["role"] == "assistant" {
		calls, _ := msgs[n-1]["tool_calls"].([]any)
		msgs[n-1]["tool_calls"] = append(calls, call)
		return msgs
	}
	return append(msgs, map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{call}})
}

// outputText is a function call's output as text: a string, or the text
// of its parts.
func outputText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) == nil {
		var b strings.Builder
		for _, p := range parts {
			b.WriteString(p.Text)
		}
		return b.String()
	}
	return string(raw)
}
