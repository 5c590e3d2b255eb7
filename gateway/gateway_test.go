package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

var chatRoutes = []string{"/v1/chat", "/v1/chat/stream", "/v1/chat/completions", "/api/v1/chat", "/api/v1/chat/stream", "/api/v1/chat/completions"}

// TestBadInput throws every kind of bad request at every chat route: each
// gets its status and JSON error, and none reaches the backend.
func TestBadInput(t *testing.T) {
	e := newEnv(t, sim.Config{})
	long := strings.Repeat("word ", 4000) // ~5000 estimated tokens, over hermes' 4096
	tests := []struct {
		name, key, body string
		status          int
		code, param     string
	}{
		{"no key", "", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`, 401, "unauthorized", ""},
		{"unknown key", "sk-wrong-secret-42", `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`, 401, "unauthorized", ""},
		{"malformed JSON", keyAll, `{"model":"hermes",`, 400, "bad_request", ""},
		{"not an object", keyAll, `[1,2]`, 400, "bad_request", ""},
		{"empty body", keyAll, ``, 400, "bad_request", ""},
		{"null body", keyAll, `null`, 400, "bad_request", ""},
		{"model missing", keyAll, `{"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "model"},
		{"model wrong type", keyAll, `{"model":7,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "model"},
		{"model empty", keyAll, `{"model":"","messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "model"},
		{"messages missing", keyAll, `{"model":"hermes"}`, 400, "bad_request", "messages"},
		{"messages empty", keyAll, `{"model":"hermes","messages":[]}`, 400, "bad_request", "messages"},
		{"messages not array", keyAll, `{"model":"hermes","messages":"hi"}`, 400, "bad_request", "messages"},
		{"message not object", keyAll, `{"model":"hermes","messages":["hi"]}`, 400, "bad_request", "messages[0]"},
		{"role missing", keyAll, `{"model":"hermes","messages":[{"content":"hi"}]}`, 400, "bad_request", "messages[0].role"},
		{"unknown role", keyAll, `{"model":"hermes","messages":[{"role":"wizard","content":"hi"}]}`, 400, "bad_request", "messages[0].role"},
		{"role wrong type", keyAll, `{"model":"hermes","messages":[{"role":1,"content":"hi"}]}`, 400, "bad_request", "messages[0]"},
		{"content number", keyAll, `{"model":"hermes","messages":[{"role":"user","content":5}]}`, 400, "bad_request", "messages[0].content"},
		{"user content null", keyAll, `{"model":"hermes","messages":[{"role":"user","content":null}]}`, 400, "bad_request", "messages[0].content"},
		{"unknown part type", keyAll, `{"model":"hermes","messages":[{"role":"user","content":[{"type":"video","video":{}}]}]}`, 400, "bad_request", "messages[0].content[0].type"},
		{"text part without text", keyAll, `{"model":"hermes","messages":[{"role":"user","content":[{"type":"text"}]}]}`, 400, "bad_request", "messages[0].content[0].text"},
		{"image without url", keyAll, `{"model":"charon","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}`, 400, "bad_request", "messages[0].content[0].image_url"},
		{"image to a text model", keyAll, `{"model":"hermes","messages":[{"role":"user","content":[{"type":"text","text":"what is it"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}]}`, 400, "bad_request", "messages"},
		{"temperature too high", keyAll, `{"model":"hermes","temperature":2.5,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "temperature"},
		{"temperature negative", keyAll, `{"model":"hermes","temperature":-0.1,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "temperature"},
		{"temperature string", keyAll, `{"model":"hermes","temperature":"hot","messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "temperature"},
		{"top_p over 1", keyAll, `{"model":"hermes","top_p":1.5,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "top_p"},
		{"max_tokens zero", keyAll, `{"model":"hermes","max_tokens":0,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "max_tokens"},
		{"max_tokens negative", keyAll, `{"model":"hermes","max_tokens":-5,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "max_tokens"},
		{"max_tokens fraction", keyAll, `{"model":"hermes","max_tokens":1.5,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "max_tokens"},
		{"max_tokens string", keyAll, `{"model":"hermes","max_tokens":"10","messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "max_tokens"},
		{"stream not bool", keyAll, `{"model":"hermes","stream":"yes","messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "stream"},
		{"stream_options not object", keyAll, `{"model":"hermes","stream_options":true,"messages":[{"role":"user","content":"hi"}]}`, 400, "bad_request", "stream_options"},
		{"max_tokens over window", keyAll, `{"model":"hermes","max_tokens":5000,"messages":[{"role":"user","content":"hi"}]}`, 400, "context_length_exceeded", "messages"},
		{"prompt over window", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"` + long + `"}]}`, 400, "context_length_exceeded", "messages"},
		{"unknown model", keyAll, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`, 404, "not_found", "model"},
		{"model outside the key's list", keyHermes, `{"model":"charon","messages":[{"role":"user","content":"hi"}]}`, 403, "forbidden", "model"},
		{"body over the limit", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"` + strings.Repeat("x", 70<<10) + `"}]}`, 413, "request_too_large", ""},
	}
	for _, route := range chatRoutes {
		for _, tt := range tests {
			t.Run(route+"/"+tt.name, func(t *testing.T) {
				resp := e.post(t, route, tt.key, tt.body)
				if resp.StatusCode != tt.status {
					b, _ := io.ReadAll(resp.Body)
					t.Fatalf("status = %d, want %d: %s", resp.StatusCode, tt.status, b)
				}
				if resp.Header.Get("X-Request-Id") == "" {
					t.Error("no X-Request-Id")
				}
				got := readError(t, resp)
				if got.Error.Code != tt.code {
					t.Errorf("code = %q, want %q (%s)", got.Error.Code, tt.code, got.Error.Message)
				}
				param := ""
				if got.Error.Param != nil {
					param = *got.Error.Param
				}
				if param != tt.param {
					t.Errorf("param = %q, want %q", param, tt.param)
				}
				if tt.key != "" && strings.Contains(got.Error.Message, tt.key) {
					t.Error("the error message repeats the secret")
				}
			})
		}
	}
	if n := e.sim.Stats().Requests; n != 0 {
		t.Errorf("the backend saw %d requests; bad input must never reach it", n)
	}
	logs := e.log.String()
	for _, secret := range []string{keyAll, keyHermes, "sk-wrong-secret-42"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains the secret %q", secret)
		}
	}
}

func TestErrorTypes(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tests := []struct {
		key, body, wantType string
	}{
		{"", `{}`, "authentication_error"},
		{keyHermes, `{"model":"charon","messages":[{"role":"user","content":"hi"}]}`, "permission_error"},
		{keyAll, `{`, "invalid_request_error"},
	}
	for _, tt := range tests {
		if got := readError(t, e.post(t, "/v1/chat", tt.key, tt.body)).Error.Type; got != tt.wantType {
			t.Errorf("type = %q, want %q", got, tt.wantType)
		}
	}
}

func TestRoutesNotFoundAndMethod(t *testing.T) {
	e := newEnv(t, sim.Config{})
	tests := []struct {
		method, path string
		status       int
		code, allow  string
	}{
		{"GET", "/v1/nothing", 404, "not_found", ""},
		{"GET", "/", 404, "not_found", ""},
		{"POST", "/v2/chat", 404, "not_found", ""},
		{"GET", "/v1/chat", 405, "method_not_allowed", "POST"},
		{"DELETE", "/v1/chat/completions", 405, "method_not_allowed", "POST"},
		{"POST", "/v1/models", 405, "method_not_allowed", "GET"},
		{"PUT", "/api/v1/chat/stream", 405, "method_not_allowed", "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, e.gw.URL+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
			}
			if got := readError(t, resp).Error.Code; got != tt.code {
				t.Errorf("code = %q, want %q", got, tt.code)
			}
			if tt.allow != "" && !strings.Contains(resp.Header.Get("Allow"), tt.allow) {
				t.Errorf("Allow = %q, want it to contain %s", resp.Header.Get("Allow"), tt.allow)
			}
		})
	}
}

func TestNativeChat(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 7})
	for _, route := range []string{"/v1/chat", "/api/v1/chat"} {
		resp := e.post(t, route, keyAll, `{"model":"hermes","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"say hello"}],"temperature":0.2,"seed":7,"custom_field":{"a":1}}`)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		raw, _ := io.ReadAll(resp.Body)
		var got struct {
			ID      string `json:"id"`
			Object  string `json:"object"`
			Created int64  `json:"created"`
			Model   string `json:"model"`
			Choices []struct {
				Index   int `json:"index"`
				Message struct {
					Role, Content string
				} `json:"message"`
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
			Usage openai.Usage `json:"usage"`
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got.ID, "chat_") || got.ID != resp.Header.Get("X-Request-Id") {
			t.Errorf("id %q, X-Request-Id %q: want the same chat_ id", got.ID, resp.Header.Get("X-Request-Id"))
		}
		if got.Object != "chat.completion" || got.Model != "hermes" || got.Created == 0 {
			t.Errorf("object %q model %q created %d", got.Object, got.Model, got.Created)
		}
		if len(got.Choices) != 1 || got.Choices[0].Message.Content != sim.Reply(7) || got.Choices[0].Message.Role != "assistant" || got.Choices[0].FinishReason != "stop" {
			t.Errorf("choices = %+v", got.Choices)
		}
		// prompt: 2 messages × 3 + 2 + 2 words, as the simulator counts.
		if want := (openai.Usage{PromptTokens: 10, CompletionTokens: 7, TotalTokens: 17}); !reflect.DeepEqual(got.Usage, want) {
			t.Errorf("usage = %+v, want %+v", got.Usage, want)
		}
		if strings.Contains(string(raw), "backend-") {
			t.Errorf("the answer names the backend's model: %s", raw)
		}
	}
	reqs := e.sim.Requests()
	if len(reqs) != 2 {
		t.Fatalf("backend saw %d requests, want 2", len(reqs))
	}
	var sent map[string]any
	json.Unmarshal(reqs[0].Body, &sent)
	if sent["model"] != "backend-hermes-8b" || sent["stream"] != false || sent["seed"] != float64(7) || sent["custom_field"] == nil {
		t.Errorf("backend got %s", reqs[0].Body)
	}
	if _, ok := sent["stream_options"]; ok {
		t.Error("stream_options sent on a non-streaming request")
	}
	if reqs[0].Authorization != "" {
		t.Errorf("the client's key reached the backend: %q", reqs[0].Authorization)
	}
}

func TestOpenAICompletionKeepsBackendFields(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3})
	resp := e.post(t, "/v1/chat/completions", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	var got map[string]any
	json.NewDecoder(resp.Body).Decode(&got)
	if got["model"] != "hermes" || got["object"] != "chat.completion" || got["id"] != resp.Header.Get("X-Request-Id") {
		t.Errorf("answer %v", got)
	}
	ch := got["choices"].([]any)[0].(map[string]any)
	if _, ok := ch["logprobs"]; !ok {
		t.Error("the backend's logprobs field was dropped")
	}
	if u := got["usage"].(map[string]any); u["completion_tokens"] != float64(3) {
		t.Errorf("usage %v", u)
	}
}

// TestNativeStream checks the native events (docs/api.md): the top-level delta
// string on every event, and finish_reason with usage on the last one.
func TestNativeStream(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 5})
	resp := e.post(t, "/v1/chat/stream", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"count to five"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for h, want := range map[string]string{"Content-Type": "text/event-stream; charset=utf-8", "X-Accel-Buffering": "no", "Cache-Control": "no-cache", "Content-Encoding": ""} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	events, _ := readEvents(t, resp.Body)
	if len(events) < 3 || !events[len(events)-1].done {
		t.Fatalf("want events ending in [DONE], got %d", len(events))
	}
	text := ""
	for _, ev := range events[:len(events)-1] {
		d, ok := ev.m["delta"].(string)
		if !ok {
			t.Fatalf("event without a top-level delta string: %s", ev.raw)
		}
		text += d
		if ev.m["model"] != "hermes" || ev.m["object"] != "chat.completion.chunk" || ev.m["id"] != resp.Header.Get("X-Request-Id") {
			t.Errorf("event %s", ev.raw)
		}
		choices := ev.m["choices"].([]any)
		if cd := choices[0].(map[string]any)["delta"].(map[string]any)["content"]; cd != nil && cd != d {
			t.Errorf("choices[0].delta.content %q != delta %q", cd, d)
		}
	}
	if text != sim.Reply(5) {
		t.Errorf("text = %q, want %q", text, sim.Reply(5))
	}
	last := events[len(events)-2].m
	if fr := last["choices"].([]any)[0].(map[string]any)["finish_reason"]; fr != "stop" {
		t.Errorf("last event finish_reason = %v", fr)
	}
	u, ok := last["usage"].(map[string]any)
	if !ok || u["completion_tokens"] != float64(5) || u["prompt_tokens"] != float64(6) {
		t.Errorf("last event usage = %v", last["usage"])
	}
	for _, ev := range events[:len(events)-2] {
		if _, ok := ev.m["usage"]; ok {
			t.Errorf("usage before the last event: %s", ev.raw)
		}
	}
	if r := e.sim.Requests(); len(r) != 1 || !r[0].Stream || !r[0].IncludeUsage || r[0].Model != "backend-hermes-8b" {
		t.Errorf("backend request %+v", r)
	}
}

// TestNativeStreamCountsWhenBackendReportsNoUsage: a backend that ignores
// include_usage still yields a usage figure, counted by the gateway.
func TestNativeStreamCountsWhenBackendReportsNoUsage(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4, NoUsage: true})
	resp := e.post(t, "/v1/chat/stream", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"abcdefgh"}]}`)
	events, _ := readEvents(t, resp.Body)
	last := events[len(events)-2].m
	u, _ := last["usage"].(map[string]any)
	// The message's 36 bytes → 9 prompt tokens estimated; 4 content chunks.
	if u["prompt_tokens"] != float64(9) || u["completion_tokens"] != float64(4) {
		t.Errorf("usage = %v", last["usage"])
	}
}

func TestOpenAIStreamUsage(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3})
	t.Run("not asked", func(t *testing.T) {
		resp := e.post(t, "/v1/chat/completions", keyAll, `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
		events, _ := readEvents(t, resp.Body)
		if !events[len(events)-1].done {
			t.Fatal("no [DONE]")
		}
		for _, ev := range events[:len(events)-1] {
			if _, ok := ev.m["usage"]; ok {
				t.Errorf("usage sent to a client that did not ask: %s", ev.raw)
			}
			if _, ok := ev.m["delta"]; ok {
				t.Errorf("native delta on the OpenAI route: %s", ev.raw)
			}
			if len(ev.m["choices"].([]any)) == 0 {
				t.Errorf("usage-only chunk sent: %s", ev.raw)
			}
		}
	})
	t.Run("asked", func(t *testing.T) {
		resp := e.post(t, "/v1/chat/completions", keyAll, `{"model":"hermes","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
		events, _ := readEvents(t, resp.Body)
		n := len(events)
		if !events[n-1].done {
			t.Fatal("no [DONE]")
		}
		last := events[n-2].m
		if len(last["choices"].([]any)) != 0 || last["usage"].(map[string]any)["completion_tokens"] != float64(3) {
			t.Errorf("last event %s", events[n-2].raw)
		}
		for _, ev := range events[:n-2] {
			if u, ok := ev.m["usage"]; !ok || u != nil {
				t.Errorf("want usage: null before the usage chunk, got %s", ev.raw)
			}
		}
	})
}

// TestCutBeforeFirstToken: a backend that drops the connection before its
// first token (nothing has reached the client yet) is answered 502
// upstream_error, streamed or not, never a 500.
func TestCutBeforeFirstToken(t *testing.T) {
	for _, stream := range []bool{true, false} {
		e := newEnv(t, sim.Config{ReplyTokens: 10, Fault: sim.Fault{Kind: sim.Disconnect, After: 0}})
		resp := e.post(t, "/v1/chat/completions", keyAll,
			fmt.Sprintf(`{"model":"hermes","stream":%t,"messages":[{"role":"user","content":"hi"}]}`, stream))
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("stream %t: status %d, want 502", stream, resp.StatusCode)
		}
		if body := readError(t, resp); body.Error.Code != "upstream_error" {
			t.Errorf("stream %t: %+v", stream, body.Error)
		}
	}
}

func TestStreamFailuresEndWithErrorEventAndDone(t *testing.T) {
	tests := []struct {
		name  string
		fault sim.Fault
		code  string
	}{
		{"error event", sim.Fault{Kind: sim.StreamError, After: 3}, "upstream_error"},
		{"abrupt disconnect", sim.Fault{Kind: sim.Disconnect, After: 2}, "upstream_error"},
	}
	for _, route := range []string{"/v1/chat/stream", "/v1/chat/completions"} {
		for _, tt := range tests {
			t.Run(route+"/"+tt.name, func(t *testing.T) {
				e := newEnv(t, sim.Config{ReplyTokens: 10, Fault: tt.fault})
				resp := e.post(t, route, keyAll, `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
				if resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
				events, _ := readEvents(t, resp.Body)
				n := len(events)
				if n < 2 || !events[n-1].done {
					t.Fatalf("want [DONE] last, got %d events", n)
				}
				errEv, ok := events[n-2].m["error"].(map[string]any)
				if !ok || errEv["code"] != tt.code || errEv["type"] != "server_error" {
					t.Fatalf("want an error event before [DONE], got %s", events[n-2].raw)
				}
				if !strings.HasPrefix(events[n-2].raw, `{"error":`) {
					t.Errorf("error event must start with {\"error\": for go-openai: %s", events[n-2].raw)
				}
				content := 0
				for _, ev := range events[:n-2] {
					if ch, ok := ev.m["choices"].([]any); ok && len(ch) > 0 {
						if c, _ := ch[0].(map[string]any)["delta"].(map[string]any)["content"].(string); c != "" {
							content++
						}
					}
				}
				if content != tt.fault.After {
					t.Errorf("relayed %d content events before the failure, want %d", content, tt.fault.After)
				}
				poll.Until(t, "the access log line", func() bool { return strings.Contains(e.log.String(), `"stream_outcome":"upstream_error"`) })
			})
		}
	}
}

func TestUpstreamStatusBeforeStream(t *testing.T) {
	tests := []struct {
		upstream   int
		status     int
		code       string
		retryAfter string
	}{
		{500, 502, "upstream_error", ""},
		{502, 502, "upstream_error", ""},
		{401, 502, "upstream_error", ""},
		{404, 502, "upstream_error", ""},
		{429, 503, "overloaded", "1"},
		{503, 503, "overloaded", "1"},
		{400, 400, "bad_request", ""},
	}
	for _, tt := range tests {
		for _, route := range []string{"/v1/chat", "/v1/chat/stream"} {
			t.Run(route+"/"+http.StatusText(tt.upstream), func(t *testing.T) {
				e := newEnv(t, sim.Config{Fault: sim.Fault{Kind: sim.Status, Status: tt.upstream}})
				resp := e.post(t, route, keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
				if resp.StatusCode != tt.status {
					t.Fatalf("status = %d, want %d", resp.StatusCode, tt.status)
				}
				if got := readError(t, resp); got.Error.Code != tt.code || strings.Contains(got.Error.Message, "127.0.0.1") {
					t.Errorf("error %+v", got.Error)
				}
				if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
					t.Errorf("Retry-After = %q, want %q", got, tt.retryAfter)
				}
			})
		}
	}
}

func TestBackendDown(t *testing.T) {
	e := newEnv(t, sim.Config{}, func(c *envConfig) {
		c.models[0].Backends[0].URL = "http://127.0.0.1:1/v1" // nothing listens on port 1
	})
	for _, route := range []string{"/v1/chat", "/v1/chat/stream"} {
		resp := e.post(t, route, keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 502 || readError(t, resp).Error.Code != "upstream_error" {
			t.Errorf("%s: status %d", route, resp.StatusCode)
		}
	}
}

func withTimeouts(to models.Timeouts) envOption {
	return func(c *envConfig) { c.models[0].Timeouts = to }
}

func TestTimeouts(t *testing.T) {
	t.Run("no first token", func(t *testing.T) {
		e := newEnv(t, sim.Config{FirstTokenDelay: time.Minute}, withTimeouts(models.Timeouts{FirstToken: 100 * time.Millisecond}))
		resp := e.post(t, "/v1/chat/stream", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 504 || readError(t, resp).Error.Code != "upstream_timeout" {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("non-streaming total", func(t *testing.T) {
		e := newEnv(t, sim.Config{Fault: sim.Fault{Kind: sim.Hang}}, withTimeouts(models.Timeouts{Total: 100 * time.Millisecond}))
		resp := e.post(t, "/v1/chat", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
		if resp.StatusCode != 504 || readError(t, resp).Error.Code != "upstream_timeout" {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
	t.Run("stalled stream", func(t *testing.T) {
		e := newEnv(t, sim.Config{Fault: sim.Fault{Kind: sim.Hang, After: 2}}, withTimeouts(models.Timeouts{Idle: 100 * time.Millisecond}))
		resp := e.post(t, "/v1/chat/stream", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
		events, _ := readEvents(t, resp.Body)
		n := len(events)
		if n < 2 || !events[n-1].done {
			t.Fatal("no [DONE]")
		}
		if errEv, _ := events[n-2].m["error"].(map[string]any); errEv["code"] != "upstream_timeout" {
			t.Errorf("want an upstream_timeout event, got %s", events[n-2].raw)
		}
	})
}

// TestKeepAliveWhileWaiting: a slow first token gets SSE comments, and the
// stream then proceeds normally, whether the backend sent its headers at
// once or held them back.
func TestKeepAliveWhileWaiting(t *testing.T) {
	for _, delayHeaders := range []bool{false, true} {
		e := newEnv(t, sim.Config{ReplyTokens: 2, FirstTokenDelay: 300 * time.Millisecond, DelayHeaders: delayHeaders},
			func(c *envConfig) { c.KeepAlive = 20 * time.Millisecond })
		resp := e.post(t, "/v1/chat/stream", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
		events, comments := readEvents(t, resp.Body)
		if comments == 0 {
			t.Errorf("delayHeaders=%v: no keep-alive comment while waiting", delayHeaders)
		}
		if !events[len(events)-1].done || events[len(events)-2].m["usage"] == nil {
			t.Errorf("delayHeaders=%v: stream did not complete normally", delayHeaders)
		}
	}
}

// TestClientGoneCancelsUpstream: a client that leaves mid-stream cancels
// the backend's generation.
func TestClientGoneCancelsUpstream(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 1000, TokensPerSecond: 50})
	req, _ := http.NewRequest("POST", e.gw.URL+"/v1/chat/stream", strings.NewReader(`{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+keyAll)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	if _, err := resp.Body.Read(buf); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close() // the client leaves
	poll.Until(t, "the backend to see the cancellation", func() bool { return e.sim.Stats().Cancelled == 1 })
	if st := e.sim.Stats(); st.Completed != 0 || st.CompletionTokens >= 1000 {
		t.Errorf("backend stats after cancel: %+v", st)
	}
	poll.Until(t, "the access log line", func() bool { return strings.Contains(e.log.String(), `"stream_outcome":"client_gone"`) })
}

func TestModelsList(t *testing.T) {
	e := newEnv(t, sim.Config{})
	get := func(path, key string) *http.Response {
		req, _ := http.NewRequest("GET", e.gw.URL+path, nil)
		if key != "" {
			req.Header.Set("X-Api-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	type list struct {
		Object string `json:"object"`
		Data   []struct {
			ID            string `json:"id"`
			Object        string `json:"object"`
			ContextWindow int    `json:"context_window"`
			Description   string `json:"description"`
		} `json:"data"`
	}
	for _, tt := range []struct {
		path, key string
		want      []string
	}{
		{"/v1/models", keyAll, []string{"charon", "hermes"}},
		{"/api/v1/models", keyAll, []string{"charon", "hermes"}},
		{"/v1/models", keyHermes, []string{"hermes"}},
	} {
		resp := get(tt.path, tt.key)
		var l list
		json.NewDecoder(resp.Body).Decode(&l)
		var ids []string
		for _, m := range l.Data {
			ids = append(ids, m.ID)
			if m.Object != "model" || m.ContextWindow == 0 {
				t.Errorf("model %+v", m)
			}
		}
		if l.Object != "list" || strings.Join(ids, ",") != strings.Join(tt.want, ",") {
			t.Errorf("%s with %s: %v, want %v", tt.path, tt.key, ids, tt.want)
		}
	}
	if resp := get("/v1/models", ""); resp.StatusCode != 401 {
		t.Errorf("unauthenticated models list: %d", resp.StatusCode)
	}
	if resp := get("/v1/models/hermes", keyHermes); resp.StatusCode != 200 {
		t.Errorf("GET /v1/models/hermes: %d", resp.StatusCode)
	}
	if resp := get("/v1/models/charon", keyHermes); resp.StatusCode != 404 {
		t.Errorf("a model outside the key's list must not be shown: %d", resp.StatusCode)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	e := newEnv(t, sim.Config{})
	for _, path := range []string{"/healthz", "/readyz", "/v1/readyz"} {
		resp, err := http.Get(e.gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d", path, resp.StatusCode)
		}
	}
	down := newEnv(t, sim.Config{}, func(c *envConfig) {
		c.models[1].Backends[0].URL = "http://127.0.0.1:1/v1"
	})
	resp, err := http.Get(down.gw.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}
	json.NewDecoder(resp.Body).Decode(&rep)
	// Every replica shares the backends: one model down degrades the
	// replica, named, but a balancer should keep it.
	if resp.StatusCode != 200 || rep.Status != "degraded" || rep.Checks["model:charon"] == "ok" || rep.Checks["model:hermes"] != "ok" {
		t.Errorf("readyz with charon's backend down: %d %+v", resp.StatusCode, rep)
	}
}

func TestBackendAPIKey(t *testing.T) {
	e := newEnv(t, sim.Config{APIKey: "upstream-secret"}, func(c *envConfig) {
		c.models[0].Backends[0].APIKey = "upstream-secret"
	})
	resp := e.post(t, "/v1/chat", keyAll, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	if strings.Contains(string(b), "upstream-secret") || strings.Contains(e.log.String(), "upstream-secret") {
		t.Error("the backend key leaked")
	}
}
