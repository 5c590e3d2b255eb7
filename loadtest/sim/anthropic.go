package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Anthropic's Messages API, as Anthropic speaks it: POST /v1/messages,
// answered whole or as its event stream, tool use with the input in
// pieces, every usage shape of prompt caching, 529 overloaded_error, 429
// with retry-after, and errors mid-stream as error events.

type messagesRequest struct {
	Model     string `json:"model"`
	MaxTokens *int   `json:"max_tokens"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	System json.RawMessage `json:"system"`
	Tools  []struct {
		Name        string          `json:"name"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
	Stream     bool            `json:"stream"`
}

// asChat is the request as the chat shape toolCall and promptTokens
// read: tool results as tool messages, blocks' text as text.
func (mr *messagesRequest) asChat() *chatRequest {
	cr := &chatRequest{Model: mr.Model}
	if present(mr.System) {
		cr.Messages = append(cr.Messages, message{Role: "system", Content: blocksText(mr.System)})
	}
	for _, m := range mr.Messages {
		role := m.Role
		var blocks []struct {
			Type    string          `json:"type"`
			Content json.RawMessage `json:"content"`
		}
		if json.Unmarshal(m.Content, &blocks) == nil && len(blocks) > 0 && blocks[0].Type == "tool_result" {
			role = "tool"
		}
		cr.Messages = append(cr.Messages, message{Role: role, Content: blocksText(m.Content)})
	}
	for _, t := range mr.Tools {
		raw, _ := json.Marshal(map[string]any{"function": map[string]any{"name": t.Name, "parameters": t.InputSchema}})
		cr.Tools = append(cr.Tools, raw)
	}
	var choice struct {
		Type string `json:"type"`
	}
	if json.Unmarshal(mr.ToolChoice, &choice) == nil && choice.Type == "none" {
		cr.ToolChoice = json.RawMessage(`"none"`)
	}
	return cr
}

func present(raw json.RawMessage) bool { return len(raw) > 0 && string(raw) != "null" }

// blocksText is a string or blocks' text (tool results' too) as a JSON
// string.
func blocksText(raw json.RawMessage) json.RawMessage {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return raw
	}
	var blocks []struct {
		Text    string          `json:"text"`
		Content json.RawMessage `json:"content"`
	}
	json.Unmarshal(raw, &blocks)
	var b strings.Builder
	for _, bl := range blocks {
		b.WriteString(bl.Text + " ")
		if present(bl.Content) {
			var inner string
			json.Unmarshal(blocksText(bl.Content), &inner)
			b.WriteString(inner + " ")
		}
	}
	out, _ := json.Marshal(b.String())
	return out
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request, cfg *Config) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return
	}
	var req messagesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "invalid JSON: "+err.Error())
		return
	}
	if req.Model == "" || req.MaxTokens == nil || len(req.Messages) == 0 {
		writeAnthropicError(w, http.StatusBadRequest, "invalid_request_error", "model, max_tokens and messages are required")
		return
	}
	if !s.begin(w, r, cfg, Request{Model: req.Model, Stream: req.Stream, IncludeUsage: true, MaxTokens: *req.MaxTokens, Body: body}) {
		return
	}
	leave := s.enter(r.Context())
	defer leave()
	cr := req.asChat()
	prompt := promptTokens(cr.Messages)
	if cfg.WorstCase {
		chat, _ := json.Marshal(cr)
		prompt = WorstPrompt(chat) // the text as a chat template would render it
	}
	g := s.newGeneration(r.Context(), cfg, "msg", req.Model, prompt, 1, *req.MaxTokens)
	g.leave = leave
	if g.tool, g.args = toolCall(cr); g.tool != "" {
		g.n, g.finish = toolTokens(g.args), "tool_calls"
	}
	if req.Stream {
		g.messageStream(w)
	} else {
		g.message(w)
	}
}

func writeAnthropicError(w http.ResponseWriter, status int, typ, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("request-id", "req_sim")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"type": "error", "error": map[string]any{"type": typ, "message": msg}})
}

// anthropicErrorTypes are the error types of the statuses a Status fault
// answers.
var anthropicErrorTypes = map[int]string{400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
	404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}

// cacheSplit is the prompt's parts: cache reads, 5-minute and 1-hour
// writes as configured, cut to the prompt, and the rest uncached.
func (g *generation) cacheSplit() (uncached, read, w5, w1 int) {
	left := g.prompt
	take := func(n int) int {
		n = min(max(n, 0), left)
		left -= n
		return n
	}
	read, w5, w1 = take(g.cfg.CachedTokens), take(g.cfg.CacheWrite5m), take(g.cfg.CacheWrite1h)
	return left, read, w5, w1
}

// anthropicUsage is a usage object in the configured shape with output
// output tokens: the split by lifetime (cache_creation) beside the total,
// or the total alone as older answers report it.
func (g *generation) anthropicUsage(output int) string {
	uncached, read, w5, w1 := g.cacheSplit()
	out := fmt.Sprintf(`{"input_tokens":%d,"cache_creation_input_tokens":%d,"cache_read_input_tokens":%d`, uncached, w5+w1, read)
	if !g.cfg.CacheWriteTotalOnly {
		out += fmt.Sprintf(`,"cache_creation":{"ephemeral_5m_input_tokens":%d,"ephemeral_1h_input_tokens":%d}`, w5, w1)
	}
	return out + fmt.Sprintf(`,"output_tokens":%d,"service_tier":"standard"}`, output)
}

func (g *generation) stopReason() string {
	switch g.finish {
	case "length":
		return "max_tokens"
	case "tool_calls":
		return "tool_use"
	}
	return "end_turn"
}

// block is the answer's content block, whole.
func (g *generation) block() string {
	if g.tool != "" {
		return fmt.Sprintf(`{"type":"tool_use","id":"toolu_%s","name":%q,"input":%s}`, g.id, g.tool, g.args)
	}
	text, _ := json.Marshal(Reply(g.n))
	return `{"type":"text","text":` + string(text) + `}`
}

// message answers whole, after the time its tokens take.
func (g *generation) message(w http.ResponseWriter) {
	if !g.whole(func() {
		writeAnthropicError(w, http.StatusInternalServerError, "api_error", "simulated generation failure")
	}) {
		return
	}
	g.reported()
	w.Header().Set("Content-Type", "application/json")
	g.leaving()
	fmt.Fprintf(w, `{"id":"%s","type":"message","role":"assistant","model":%q,"content":[%s],"stop_reason":%q,"stop_sequence":null,"usage":%s}`,
		g.id, g.model, g.block(), g.stopReason(), g.anthropicUsage(g.n))
	g.done(true)
}
