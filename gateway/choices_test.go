package gateway_test

import (
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/obol/obol/loadtest/sim"
)

const weatherTools = `,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}]`

// TestNativeDeltaIsChoiceZero: the native stream's top-level delta is
// choice 0's text alone, with n choices interleaved and with tool calls
// (whose pieces are read from choices).
func TestNativeDeltaIsChoiceZero(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4})
	resp := e.post(t, "/v1/chat/stream", keyAll, hi+`,"n":2}`)
	events, _ := readEvents(t, resp.Body)
	joined, others := "", map[float64]string{}
	for _, ev := range events[:len(events)-1] {
		joined += ev.m["delta"].(string)
		for _, c := range ev.m["choices"].([]any) {
			ch := c.(map[string]any)
			if d, ok := ch["delta"].(map[string]any); ok {
				if s, ok := d["content"].(string); ok {
					others[ch["index"].(float64)] += s
				}
			}
		}
	}
	if joined != sim.Reply(4) || others[1] != sim.Reply(4) {
		t.Errorf("n=2: delta joins to %q, choice 1 to %q; want %q each", joined, others[1], sim.Reply(4))
	}

	resp = e.post(t, "/v1/chat/stream", keyAll, hi+weatherTools+`}`)
	events, _ = readEvents(t, resp.Body)
	args := ""
	for _, ev := range events[:len(events)-1] {
		if ev.m["delta"] != "" {
			t.Errorf("a tool call's event has a text delta: %s", ev.raw)
		}
		for _, c := range ev.m["choices"].([]any) {
			d, _ := c.(map[string]any)["delta"].(map[string]any)
			calls, _ := d["tool_calls"].([]any)
			for _, tc := range calls {
				args += tc.(map[string]any)["function"].(map[string]any)["arguments"].(string)
			}
		}
	}
	if args != sim.ToolArguments {
		t.Errorf("tool call arguments from choices: %q", args)
	}
}

// TestOwnCountWithoutUsage: a backend that reports no usage is charged by
// the gateway's count of every choice and of tool calls, streamed or not.
func TestOwnCountWithoutUsage(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4, NoUsage: true})
	bodies := []struct {
		path, body string
		atLeast    int64
	}{
		{"/v1/chat/stream", hi + `,"n":2}`, 8},
		{"/v1/chat/completions", hi + `,"stream":true` + weatherTools + `}`, int64(sim.ToolCallTokens())},
		{"/v1/chat/stream", hi + weatherTools + `}`, int64(sim.ToolCallTokens())},
		{"/v1/chat", hi + weatherTools + `}`, int64(sim.ToolCallTokens())},
		{"/v1/chat/completions", hi + `,"n":3}`, 12},
	}
	var before int64
	for i, b := range bodies {
		if status, _ := e.send(t, b.path, b.body); status != 200 {
			t.Fatalf("%s: %d", b.path, status)
		}
		total := e.waitRecorded(t, keyAll, int64(i+1)).ByModel["hermes"].Completion
		if got := total - before; got < b.atLeast {
			t.Errorf("%s %s: %d completion tokens counted, want at least %d", b.path, b.body, got, b.atLeast)
		}
		before = total
	}
}

// TestBackendFieldsReachEveryShape: cached and reasoning token details,
// system_fingerprint and service_tier reach the client in the native
// answer, the native stream and OpenAI's stream.
func TestBackendFieldsReachEveryShape(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3, CachedTokens: 2, ReasoningTokens: 1, Fingerprint: "fp_sim", ServiceTier: "default"})
	want := []string{`"cached_tokens":2`, `"reasoning_tokens":1`, `"system_fingerprint":"fp_sim"`, `"service_tier":"default"`}
	check := func(name, text string) {
		for _, w := range want {
			if !strings.Contains(text, w) {
				t.Errorf("%s lacks %s: %s", name, w, text)
			}
		}
	}
	resp := e.post(t, "/v1/chat", keyAll, hi+`}`)
	b, _ := io.ReadAll(resp.Body)
	check("native answer", string(b))
	resp = e.post(t, "/v1/chat/stream", keyAll, hi+`}`)
	events, _ := readEvents(t, resp.Body)
	check("native stream's final event", events[len(events)-2].raw)
	resp = e.post(t, "/v1/chat/completions", keyAll, hi+`,"stream":true,"stream_options":{"include_usage":true}}`)
	events, _ = readEvents(t, resp.Body)
	check("OpenAI stream's usage chunk", events[len(events)-2].raw)
	var first map[string]any
	json.Unmarshal([]byte(events[0].raw), &first)
	if first["system_fingerprint"] != "fp_sim" || first["service_tier"] != "default" {
		t.Errorf("OpenAI stream's first chunk: %s", events[0].raw)
	}
}
