package anthropic

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/wire/openai"
)

// Request is what the gateway reads of a Messages request. Members it
// does not know (context_management, service_tier, …) are dropped: a
// Chat Completions backend has no use for them.
type Request struct {
	Model             string            `json:"model"`
	MaxTokens         *int              `json:"max_tokens"`
	Messages          []json.RawMessage `json:"messages"`
	System            json.RawMessage   `json:"system"`
	StopSequences     []string          `json:"stop_sequences"`
	Temperature       json.RawMessage   `json:"temperature"`
	TopP              json.RawMessage   `json:"top_p"`
	TopK              json.RawMessage   `json:"top_k"`
	Metadata          *metadata         `json:"metadata"`
	Tools             []json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	Thinking          json.RawMessage   `json:"thinking"`
	Stream            bool              `json:"stream"`
	ServiceTier       json.RawMessage   `json:"service_tier"`
	MCPServers        json.RawMessage   `json:"mcp_servers"`
	Container         json.RawMessage   `json:"container"`
	ContextManagement json.RawMessage   `json:"context_management"`

	// OnlyAnthropic, when set, is why no OpenAI backend can take the
	// request (a document block): the answer if the model has no
	// Anthropic backend to take it. Extra are the tokens of its PDF
	// pages, beside their bytes (documents.go).
	OnlyAnthropic *apierr.Error `json:"-"`
	Extra         int           `json:"-"`
}

type metadata struct {
	UserID *string `json:"user_id"`
}

// chatRequest is the Chat Completions request a Messages request
// becomes, its members in this order.
type chatRequest struct {
	Model             string          `json:"model"`
	Messages          []chatMessage   `json:"messages"`
	MaxTokens         *int            `json:"max_tokens,omitempty"`
	Stop              []string        `json:"stop,omitempty"`
	Temperature       json.RawMessage `json:"temperature,omitempty"`
	TopP              json.RawMessage `json:"top_p,omitempty"`
	TopK              json.RawMessage `json:"top_k,omitempty"`
	User              *string         `json:"user,omitempty"`
	Tools             []chatTool      `json:"tools,omitempty"`
	ToolChoice        any             `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	Stream            bool            `json:"stream,omitempty"`
}

// Translate reads a Messages request and decodes the Chat Completions
// request that carries it, whose output cap is lowered to fit the
// model's window where it asks for more (see openai.Request.FitWindow).
func Translate(body []byte) (*Request, *openai.Request, error) {
	return translate(body, true)
}

// TranslateCount reads a count_tokens request: a Messages request
// without max_tokens.
func TranslateCount(body []byte) (*Request, *openai.Request, error) {
	return translate(body, false)
}

func translate(body []byte, needMax bool) (*Request, *openai.Request, error) {
	ar, err := decode(body, needMax)
	if err != nil {
		return nil, nil, err
	}
	chat, err := ar.chat()
	if err != nil {
		return nil, nil, err
	}
	b, err := json.Marshal(chat)
	if err != nil {
		return nil, nil, fmt.Errorf("write the chat request: %w", err)
	}
	req, err := openai.DecodeChat(b)
	if err != nil {
		return nil, nil, err
	}
	req.FitWindow, req.Extra = true, ar.Extra
	return ar, req, nil
}

// decode parses and checks the members every translation needs.
func decode(body []byte, needMax bool) (*Request, error) {
	if !utf8.Valid(body) {
		return nil, apierr.BadRequest("", "the request body is not valid UTF-8 (JSON must be)")
	}
	var ar Request
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, apierr.BadRequest("", "the request body must be a JSON object of the Messages API: "+err.Error())
	}
	if err := jsonobj.ExactNames("", body, &ar); err != nil {
		return nil, err
	}
	if ar.Metadata != nil {
		fields, _ := jsonobj.Members(body)
		if err := jsonobj.ExactNames("metadata", fields["metadata"], ar.Metadata); err != nil {
			return nil, err
		}
	}
	switch {
	case ar.Model == "":
		return nil, apierr.BadRequest("model", "missing required parameter: model")
	case needMax && ar.MaxTokens == nil:
		return nil, apierr.BadRequest("max_tokens", "missing required parameter: max_tokens")
	case ar.MaxTokens != nil && *ar.MaxTokens < 1:
		return nil, apierr.BadRequest("max_tokens", "max_tokens must be at least 1")
	case len(ar.Messages) == 0:
		return nil, apierr.BadRequest("messages", "messages must be a non-empty array of messages")
	case present(ar.MCPServers):
		return nil, apierr.BadRequest("mcp_servers", "MCP servers are not served: obol's backends call no tools themselves; give the model the tools as tools and run them in the client")
	case present(ar.Container):
		return nil, apierr.BadRequest("container", "containers are not served: obol's backends run no code")
	}
	if err := checkThinking(ar.Thinking); err != nil {
		return nil, err
	}
	return &ar, nil
}

// present reports whether an optional member was sent with a value.
func present(raw json.RawMessage) bool { return len(raw) > 0 && !jsonobj.IsNull(raw) }

// checkThinking accepts Anthropic's thinking settings. A Chat Completions
// backend is not sent them: it has no such setting.
func checkThinking(raw json.RawMessage) error {
	if !present(raw) {
		return nil
	}
	var t struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(raw, &t) != nil {
		return apierr.BadRequest("thinking", `thinking must be an object such as {"type":"enabled","budget_tokens":1024}`)
	}
	switch t.Type {
	case "enabled", "disabled", "adaptive":
		return nil
	}
	return apierr.BadRequest("thinking.type", fmt.Sprintf("unknown thinking type %q: use enabled, disabled or adaptive", clip.String(t.Type, 40)))
}

// chat is the Chat Completions request that carries ar.
func (ar *Request) chat() (*chatRequest, error) {
	msgs, err := ar.messages()
	if err != nil {
		return nil, err
	}
	out := &chatRequest{Model: ar.Model, Messages: msgs, MaxTokens: ar.MaxTokens, Stop: ar.StopSequences,
		Temperature: ar.Temperature, TopP: ar.TopP, TopK: ar.TopK, Stream: ar.Stream}
	if ar.Metadata != nil && ar.Metadata.UserID != nil && *ar.Metadata.UserID != "" {
		out.User = ar.Metadata.UserID
	}
	if err := ar.translateTools(out); err != nil {
		return nil, err
	}
	return out, nil
}

// tool is a tool definition of the Messages API.
type tool struct {
	Type         string          `json:"type"`
	Name         string          `json:"name"`
	Description  string          `json:"description"`
	InputSchema  json.RawMessage `json:"input_schema"`
	CacheControl json.RawMessage `json:"cache_control"`
}

type chatTool struct {
	Type     string       `json:"type"`
	Function chatFunction `json:"function"`
}

type chatFunction struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

// translateTools turns custom tools into Chat Completions' functions and
// the tool choice with them; server tools (web search, code execution,
// …) are refused, as no backend runs them.
func (ar *Request) translateTools(out *chatRequest) error {
	for i, raw := range ar.Tools {
		var t tool
		param := fmt.Sprintf("tools.%d", i)
		if err := json.Unmarshal(raw, &t); err != nil {
			return apierr.BadRequest(param, "each tool must be an object with a name and an input_schema")
		}
		if err := jsonobj.ExactNames(param, raw, &t); err != nil {
			return err
		}
		if t.Type != "" && t.Type != "custom" {
			return apierr.BadRequest(param+".type", fmt.Sprintf("the server tool %q is not served: obol's backends run no tools themselves; define it as a custom tool (name, description, input_schema) and run it in the client", clip.String(t.Type, 60)))
		}
		if t.Name == "" {
			return apierr.BadRequest(param+".name", "missing required parameter: "+param+".name")
		}
		schema := t.InputSchema
		if !present(schema) {
			schema = json.RawMessage(`{"type":"object"}`)
		}
		out.Tools = append(out.Tools, chatTool{Type: "function", Function: chatFunction{Name: t.Name, Description: t.Description, Parameters: schema}})
	}
	return ar.translateChoice(out)
}

// translateChoice turns tool_choice into Chat Completions': auto, any
// (required), a named tool, none; disable_parallel_tool_use into
// parallel_tool_calls.
func (ar *Request) translateChoice(out *chatRequest) error {
	if !present(ar.ToolChoice) {
		return nil
	}
	var tc struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse *bool  `json:"disable_parallel_tool_use"`
	}
	if json.Unmarshal(ar.ToolChoice, &tc) != nil {
		return apierr.BadRequest("tool_choice", `tool_choice must be an object such as {"type":"auto"}`)
	}
	if err := jsonobj.ExactNames("tool_choice", ar.ToolChoice, &tc); err != nil {
		return err
	}
	var choice any
	switch tc.Type {
	case "auto", "none":
		choice = tc.Type
	case "any":
		choice = "required"
	case "tool":
		if tc.Name == "" {
			return apierr.BadRequest("tool_choice.name", `tool_choice {"type":"tool"} needs the tool's name`)
		}
		choice = map[string]any{"type": "function", "function": map[string]string{"name": tc.Name}}
	default:
		return apierr.BadRequest("tool_choice.type", fmt.Sprintf("unknown tool_choice type %q: use auto, any, tool or none", clip.String(tc.Type, 40)))
	}
	if len(out.Tools) == 0 {
		return nil // Chat Completions takes no tool choice without tools
	}
	out.ToolChoice = choice
	if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
		no := false
		out.ParallelToolCalls = &no
	}
	return nil
}
