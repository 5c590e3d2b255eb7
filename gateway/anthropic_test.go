package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// anthropic posts body to path as an Anthropic SDK does (x-api-key,
// anthropic-version, a beta obol does not know), and returns the status,
// the JSON answer and the raw body.
func (e *env) anthropic(t *testing.T, path, key, body string) (int, map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.gw.URL+path, strings.NewReader(body))
	req.Header.Set("X-Api-Key", key)
	req.Header.Set("Anthropic-Version", "2023-06-01")
	req.Header.Set("Anthropic-Beta", "claude-code-20250219,some-future-beta-2027-01-01")
	resp, err := e.gw.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(raw, &m)
	return resp.StatusCode, m, string(raw)
}

// claudeCodeBody is a request as Claude Code sends it: system text blocks
// with cache_control, a system entry inside messages, thinking, betas'
// members obol does not know, and its session in metadata.user_id.
const claudeCodeBody = `{"model":"hermes","max_tokens":32000,"stream":false,
 "system":[{"type":"text","text":"You are Claude Code."},{"type":"text","text":"Be careful.","cache_control":{"type":"ephemeral"}}],
 "messages":[{"role":"user","content":[{"type":"text","text":"<system-reminder>ctx</system-reminder>"},{"type":"text","text":"Say hello","cache_control":{"type":"ephemeral"}}]},
  {"role":"system","content":[{"type":"text","text":"# Environment","cache_control":{"type":"ephemeral"}}]}],
 "tools":[{"name":"Read","description":"Reads a file","input_schema":{"type":"object","properties":{"file_path":{"type":"string"}},"required":["file_path"]}}],
 "thinking":{"type":"adaptive","display":"omitted"},"context_management":{"edits":[{"type":"clear_thinking_20251015","keep":"all"}]},
 "output_config":{"effort":"high"},"metadata":{"user_id":"{\"session_id\":\"s-1\"}"}}`

// TestMessagesTranslation: a Claude Code request reaches the backend as
// Chat Completions: the system text first and in place, no cache_control,
// thinking or betas' members, tools as functions, the output cap lowered
// to what the window leaves, the session as user; the answer is a
// Messages answer whose usage is the backend's.
func TestMessagesTranslation(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4})
	status, m, raw := e.anthropic(t, "/v1/messages?beta=true", keyAll, claudeCodeBody)
	if status != 200 || m["type"] != "message" || m["stop_reason"] != "tool_use" {
		t.Fatalf("%d %s", status, raw)
	}
	content := m["content"].([]any)
	if use := content[0].(map[string]any); use["type"] != "tool_use" || use["name"] != "Read" {
		t.Errorf("content %v", content)
	}
	var sent struct {
		Messages []struct {
			Role    string `json:"role"`
			Content any    `json:"content"`
		} `json:"messages"`
		MaxTokens int `json:"max_tokens"`
		Tools     []struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		} `json:"tools"`
		User string `json:"user"`
	}
	body := e.sim.Requests()[0].Body
	if err := json.Unmarshal(body, &sent); err != nil {
		t.Fatal(err)
	}
	roles := []string{}
	for _, msg := range sent.Messages {
		roles = append(roles, msg.Role)
	}
	if strings.Join(roles, ",") != "system,user,system" || sent.Messages[0].Content != "You are Claude Code.\n\nBe careful." ||
		sent.Messages[1].Content != "<system-reminder>ctx</system-reminder>\nSay hello" {
		t.Errorf("messages sent: %s", body)
	}
	for _, absent := range []string{"cache_control", "thinking", "context_management", "output_config", "metadata"} {
		if strings.Contains(string(body), absent) {
			t.Errorf("%s reached the backend: %s", absent, body)
		}
	}
	if len(sent.Tools) != 1 || sent.Tools[0].Type != "function" || sent.Tools[0].Function.Name != "Read" || sent.User != `{"session_id":"s-1"}` {
		t.Errorf("tools and user sent: %s", body)
	}
	if sent.MaxTokens >= 4096 || sent.MaxTokens < 3000 {
		t.Errorf("max_tokens sent %d: want 32,000 lowered to what hermes's 4,096-token window leaves", sent.MaxTokens)
	}
	usage := m["usage"].(map[string]any)
	if st := e.sim.Stats(); usage["input_tokens"] != float64(st.ReportedPrompt) || usage["output_tokens"] != float64(st.ReportedTokens) {
		t.Errorf("usage %v, the backend reported %d and %d", usage, st.ReportedPrompt, st.ReportedTokens)
	}
}

// TestMessagesRefusals: what no Chat Completions backend can do, and
// malformed requests, are 400s in Anthropic's shape naming the cause;
// no backend is called.
func TestMessagesRefusals(t *testing.T) {
	e := newEnv(t, sim.Config{})
	for name, tt := range map[string]struct{ body, want string }{
		"no max_tokens":  {`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`, "max_tokens"},
		"no messages":    {`{"model":"hermes","max_tokens":5,"messages":[]}`, "messages"},
		"a folded name":  {`{"model":"hermes","max_tokens":5,"max_tokenſ":90000,"messages":[{"role":"user","content":"hi"}]}`, "max_tokenſ"},
		"a document":     {`{"model":"hermes","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{"type":"text","data":"x"}}]}]}`, "document"},
		"a server tool":  {`{"model":"hermes","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"tools":[{"type":"code_execution_20250825","name":"code_execution"}]}`, "code_execution_20250825"},
		"MCP servers":    {`{"model":"hermes","max_tokens":5,"messages":[{"role":"user","content":"hi"}],"mcp_servers":[{"type":"url","url":"https://x","name":"x"}]}`, "MCP"},
		"a bad role":     {`{"model":"hermes","max_tokens":5,"messages":[{"role":"tool","content":"hi"}]}`, "role"},
		"input not JSON": {`{"model":"hermes","max_tokens":5,"messages":[{"role":"assistant","content":[{"type":"tool_use","id":"t","name":"x","input":[1]}]}]}`, "input"},
		"a file image":   {`{"model":"hermes","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}]}`, "file"},
		"not JSON":       {`{"model":`, "JSON"},
	} {
		status, m, raw := e.anthropic(t, "/v1/messages", keyAll, tt.body)
		errObj, _ := m["error"].(map[string]any)
		if status != 400 || m["type"] != "error" || errObj["type"] != "invalid_request_error" || !strings.Contains(errObj["message"].(string), tt.want) ||
			!strings.HasPrefix(m["request_id"].(string), "msg_") {
			t.Errorf("%s: %d %s", name, status, raw)
		}
	}
	if n := e.sim.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached the backend", n)
	}
}

// TestCountTokens: count_tokens answers the estimate admission holds for
// the same prompt, counts as a request against RPM but uses no tokens of
// TPM, and records nothing.
func TestCountTokens(t *testing.T) {
	e := newEnv(t, sim.Config{}, withQuota(redisLimiter(t)), withLimits(keyAll, quota.Limits{RPM: 3, TPM: 50}))
	long := `{"model":"hermes","messages":[{"role":"user","content":"` + strings.Repeat("word ", 400) + `"}]}`
	status, m, raw := e.anthropic(t, "/v1/messages/count_tokens", keyAll, long)
	if status != 200 || m["input_tokens"].(float64) < 400 {
		t.Fatalf("%d %s", status, raw)
	}
	e.anthropic(t, "/v1/messages/count_tokens", keyAll, long)
	e.anthropic(t, "/v1/messages/count_tokens", keyAll, long)
	if status, _, raw := e.anthropic(t, "/v1/messages/count_tokens", keyAll, long); status != 429 || !strings.Contains(raw, "rate_limit_error") {
		t.Errorf("a fourth count in a minute of RPM 3: %d %s", status, raw)
	}
	if n := e.sim.Stats().Requests; n != 0 {
		t.Errorf("%d requests reached the backend", n)
	}
	if s := e.usageOf(t, keyAll, ""); requests(s) != 0 {
		t.Errorf("counting recorded %d requests", requests(s))
	}
}

// TestModelAliases: a client's own model ids resolve to obol's models by
// the configured aliases, exact or by prefix, on every route; the answer
// and the ledger name obol's model.
func TestModelAliases(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2}, func(c *envConfig) {
		c.models[0].Aliases = []string{"claude-sonnet-4-5", "claude-haiku-*"}
	})
	for _, id := range []string{"claude-sonnet-4-5", "claude-haiku-4-5-20251001"} {
		status, m, raw := e.anthropic(t, "/v1/messages", keyAll, `{"model":"`+id+`","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
		if status != 200 || m["model"] != "hermes" {
			t.Errorf("%s: %d %s", id, status, raw)
		}
	}
	if status, _, raw := e.anthropic(t, "/v1/messages", keyAll, `{"model":"claude-opus-4","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`); status != 404 || !strings.Contains(raw, "not_found_error") {
		t.Errorf("an id no alias names: %d %s", status, raw)
	}
	if resp := e.post(t, "/v1/chat/completions", keyAll, `{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"hi"}]}`); resp.StatusCode != 200 {
		t.Errorf("chat completions by alias: %d", resp.StatusCode)
	}
	s := e.waitRecorded(t, keyAll, 3)
	if len(s.ByModel) != 1 || s.ByModel["hermes"].Requests != 3 {
		t.Errorf("ledger %+v", s.ByModel)
	}
}

// TestMessagesRequestLog: a Messages request is recorded under its own
// API in the request log, with the backend's usage.
func TestMessagesRequestLog(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	l := usage.NewLedger(usage.NewPostgres(pool, 35), usage.Options{})
	t.Cleanup(func() { l.Close(context.Background()) })
	e := newEnv(t, sim.Config{ReplyTokens: 3}, withLedger(l))
	_, _, raw := e.anthropic(t, "/anthropic/v1/messages", keyAll, `{"model":"hermes","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	if !strings.Contains(raw, "event: message_stop") {
		t.Fatalf("stream: %s", raw)
	}
	var api string
	var completion int64
	poll.Until(t, "the request logged", func() bool {
		return pool.QueryRow(context.Background(), "SELECT api, completion_tokens FROM request_log").Scan(&api, &completion) == nil
	})
	if api != "messages" || completion != 3 {
		t.Errorf("request_log: api %q, completion %d", api, completion)
	}
}
