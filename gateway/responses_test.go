package gateway_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/obol/obol/loadtest/sim"
)

// namedEvents reads a Responses stream: each event's name and data.
func namedEvents(t *testing.T, body string) (names []string, data []map[string]any) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if n, ok := strings.CutPrefix(line, "event: "); ok {
			names = append(names, n)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			var m map[string]any
			if err := json.Unmarshal([]byte(d), &m); err != nil {
				t.Fatalf("event data is not JSON: %s", d)
			}
			data = append(data, m)
		}
	}
	return names, data
}

// TestResponsesStream: the event stream's order and names, each event's
// type and sequence, the usage of response.completed in the ledger; a
// backend failing mid-stream ends it with response.failed.
func TestResponsesStream(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 3})
	resp := e.post(t, "/v1/responses", keyAll, `{"model":"hermes","input":"hi","stream":true}`)
	raw := bodyOf(t, resp)
	names, data := namedEvents(t, raw)
	want := []string{"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added",
		"response.output_text.delta", "response.output_text.delta", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"}
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v", names)
	}
	for i, d := range data {
		if d["type"] != names[i] || d["sequence_number"] != float64(i) {
			t.Errorf("event %d: %v", i, d)
		}
	}
	if strings.Contains(raw, "[DONE]") {
		t.Error("a Responses stream ends without [DONE], as OpenAI's")
	}
	usage := data[len(data)-1]["response"].(map[string]any)["usage"].(map[string]any)
	s := e.waitRecorded(t, keyAll, 1)
	if row := s.ByModel["hermes"]; float64(row.Completion) != usage["output_tokens"] || float64(row.Prompt) != usage["input_tokens"] || row.Completion != 3 {
		t.Errorf("ledger %+v, usage %v", row, usage)
	}

	faulty := newEnv(t, sim.Config{ReplyTokens: 5, Fault: sim.Fault{Kind: sim.StreamError, After: 2}})
	names, data = namedEvents(t, bodyOf(t, faulty.post(t, "/v1/responses", keyAll, `{"model":"hermes","input":"hi","stream":true}`)))
	last := data[len(data)-1]["response"].(map[string]any)
	if names[len(names)-1] != "response.failed" || last["status"] != "failed" || last["error"].(map[string]any)["code"] != "upstream_error" {
		t.Errorf("failure: %v %v", names, last)
	}
	faulty.waitRecorded(t, keyAll, 1)
}

// TestResponsesRefusals: what a stateless gateway cannot do is a 400
// naming the field.
func TestResponsesRefusals(t *testing.T) {
	e := newEnv(t, sim.Config{})
	for _, tt := range []struct{ body, param string }{
		{`{"model":"hermes","input":"x","store":true}`, "store"},
		{`{"model":"hermes","input":"x","previous_response_id":"resp_1"}`, "previous_response_id"},
		{`{"model":"hermes","input":"x","tools":[{"type":"web_search"}]}`, "tools[0]"},
		{`{"model":"hermes","input":[{"type":"input_file","file_id":"f"}]}`, "input[0].type"},
		{`{"model":"hermes","input":[]}`, "input"},
		{`{"model":"hermes","input":"x","text":{"format":{"type":"yaml"}}}`, "text.format.type"},
	} {
		resp := e.post(t, "/v1/responses", keyAll, tt.body)
		if er := readError(t, resp); resp.StatusCode != 400 || er.Error.Param == nil || *er.Error.Param != tt.param {
			t.Errorf("%s: %d %+v", tt.body, resp.StatusCode, er)
		}
	}
	if n := e.sim.Stats().Requests; n != 0 {
		t.Errorf("%d refused requests reached the backend", n)
	}
}

// TestResponsesTranslation: what the backend is sent for a Responses
// request: instructions as the system message, function calls and their
// outputs as chat turns, the output cap, tools and the format.
func TestResponsesTranslation(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2})
	body := `{"model":"hermes","instructions":"Be brief.","max_output_tokens":7,
	 "input":[{"role":"user","content":[{"type":"input_text","text":"Weather?"}]},
	   {"type":"function_call","call_id":"call_1","name":"get_weather","arguments":"{}"},
	   {"type":"function_call_output","call_id":"call_1","output":"sunny"},
	   {"type":"item_reference","id":"msg_1"}],
	 "tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"}}],
	 "tool_choice":{"type":"function","name":"get_weather"},
	 "text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"},"strict":true}}}`
	if resp := e.post(t, "/v1/responses", keyAll, body); resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, bodyOf(t, resp))
	}
	var sent map[string]any
	json.Unmarshal(e.sim.Requests()[0].Body, &sent)
	msgs, _ := json.Marshal(sent["messages"])
	wantMsgs := `[{"content":"Be brief.","role":"system"},{"content":[{"text":"Weather?","type":"text"}],"role":"user"},` +
		`{"content":null,"role":"assistant","tool_calls":[{"function":{"arguments":"{}","name":"get_weather"},"id":"call_1","type":"function"}]},` +
		`{"content":"sunny","role":"tool","tool_call_id":"call_1"}]`
	if string(msgs) != wantMsgs || sent["max_tokens"] != 7.0 {
		t.Errorf("messages %s, max_tokens %v", msgs, sent["max_tokens"])
	}
	tools, _ := json.Marshal(sent["tools"])
	choice, _ := json.Marshal(sent["tool_choice"])
	format, _ := json.Marshal(sent["response_format"])
	if string(tools) != `[{"function":{"name":"get_weather","parameters":{"type":"object"}},"type":"function"}]` ||
		string(choice) != `{"function":{"name":"get_weather"},"type":"function"}` ||
		string(format) != `{"json_schema":{"name":"w","schema":{"type":"object"},"strict":true},"type":"json_schema"}` {
		t.Errorf("tools %s, tool_choice %s, response_format %s", tools, choice, format)
	}
}

// bodyOf reads an answer's body whole.
func bodyOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := readAll(resp)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
