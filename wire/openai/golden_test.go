package openai

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/wiretest"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
)

// Golden wire transcripts: a backend's bytes in (testdata/backend, as the
// simulator speaks vLLM and OpenAI: text, tool calls in pieces, n
// interleaved, no usage), a client's bytes out (testdata/golden), for the
// native, Chat Completions and Responses shapes, streamed and not.
// go test ./wire/openai -run Golden -update writes the goldens anew.

var update = flag.Bool("update", false, "write the golden transcripts anew")

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	wiretest.Golden(t, *update, name, got)
}

// cost is a price of a micro-dollar a token, for the native shapes' cost.
func cost(u *Usage) money.Money { return money.Money(u.TotalTokens) * 1_000_000 }

func goldenRequest(t *testing.T, body string) *Request {
	t.Helper()
	req, err := DecodeChat([]byte(body))
	if err == nil {
		err = req.Check(&models.Model{Name: "hermes", ContextWindow: 1 << 20, ImageTokens: 1445})
	}
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestGoldenStreams(t *testing.T) {
	files, _ := filepath.Glob("testdata/backend/*.sse")
	if len(files) == 0 {
		t.Fatal("no backend transcripts")
	}
	rr, _, err := TranslateResponses([]byte(`{"model":"hermes","input":"hi","stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		name := strings.TrimSuffix(filepath.Base(f), ".sse")
		for shape, newStream := range map[string]func(s Sink, turn *Turn) Streamer{
			"native": func(s Sink, turn *Turn) Streamer {
				return NewChatStream(s, turn, goldenRequest(t, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`), "hermes", true, cost)
			},
			"chat": func(s Sink, turn *Turn) Streamer {
				req := goldenRequest(t, `{"model":"hermes","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`)
				return NewChatStream(s, turn, req, "hermes", false, cost)
			},
			"chat-no-usage": func(s Sink, turn *Turn) Streamer {
				return NewChatStream(s, turn, goldenRequest(t, `{"model":"hermes","stream":true,"messages":[{"role":"user","content":"hi"}]}`), "hermes", false, cost)
			},
			"responses": func(s Sink, turn *Turn) Streamer { return NewResponseStream(s, turn, rr, "hermes", 7) },
		} {
			t.Run(name+"/"+shape, func(t *testing.T) {
				var out wiretest.Sink
				turn := &Turn{ID: "chat_GOLDEN"}
				st := newStream(&out, turn)
				if err := st.Run(wiretest.EventsOf(raw)); err != nil {
					t.Fatal(err)
				}
				u, counted := st.Relayed()
				fmt.Fprintf(&out.Out, "# usage %s, counted %d, finish %v\n", usageText(u), counted, turn.Finish)
				golden(t, name+"."+shape+".sse", out.Out.Bytes())
			})
		}
	}
}

func usageText(u *Usage) string {
	if u == nil {
		return "none"
	}
	b, _ := json.Marshal(u)
	return string(b)
}

func TestGoldenAnswers(t *testing.T) {
	files, _ := filepath.Glob("testdata/backend/*.json")
	rr, _, err := TranslateResponses([]byte(`{"model":"hermes","input":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	req := goldenRequest(t, `{"model":"hermes","messages":[{"role":"user","content":"hi"}]}`)
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			comp := new(chunk.Chunk)
			var u *Usage
			if err := chunk.Parse(raw, comp); err != nil || ReadUsage(comp.Usage, &u) != nil {
				t.Fatalf("backend answer: %v", err)
			}
			if u == nil {
				u = CountCompletion(req, comp.Choices)
			}
			golden(t, name+".native.json", AppendNativeResponse(nil, "chat_GOLDEN", comp.Created, "hermes", comp, u.WithCost(cost(u))))
			compat, err := CompatResponse(raw, "chat_GOLDEN", "chat.completion", "hermes", comp.Usage == nil, u)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, name+".chat.json", compat)
			o, err := rr.Answer(&Turn{ID: "resp_GOLDEN"}, "hermes", comp, u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(o)
			golden(t, name+".responses.json", b)
		})
	}
}
