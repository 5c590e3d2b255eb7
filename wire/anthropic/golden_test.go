package anthropic

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
	"github.com/obol/obol/wire/openai"
)

// Golden wire transcripts: Messages requests in (testdata/requests), the
// Chat Completions bodies sent upstream out; a backend's answers and
// streams in (wire/openai's testdata/backend, as the simulator speaks
// vLLM and OpenAI, and testdata/backend: stop sequences, cached tokens,
// text then tool calls in pieces), the Messages answers and events out
// (testdata/golden). go test ./wire/anthropic -run Golden -update writes
// the goldens anew.

var update = flag.Bool("update", false, "write the golden transcripts anew")

var goldenModel = &models.Model{Name: "hermes", ContextWindow: 1 << 20, ImageTokens: 1445, Vision: true}

func backendFiles(t *testing.T, ext string) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"../openai/testdata/backend", "testdata/backend"} {
		fs, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
		files = append(files, fs...)
	}
	if len(files) == 0 {
		t.Fatal("no backend transcripts")
	}
	return files
}

func translated(t *testing.T, body string) (*Request, *openai.Request) {
	t.Helper()
	ar, req, err := Translate([]byte(body))
	if err == nil {
		err = req.Check(goldenModel)
	}
	if err != nil {
		t.Fatal(err)
	}
	return ar, req
}

func TestGoldenRequests(t *testing.T) {
	files, _ := filepath.Glob("testdata/requests/*.json")
	if len(files) == 0 {
		t.Fatal("no requests")
	}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			_, req := translated(t, string(raw))
			wiretest.Golden(t, *update, name+".upstream.json", req.UpstreamBody(req.Stream))
		})
	}
}

const stopRequest = `{"model":"hermes","max_tokens":50,"stop_sequences":["END"],"messages":[{"role":"user","content":"count"}]}`

func TestGoldenStreams(t *testing.T) {
	ar, req := translated(t, stopRequest)
	for _, f := range backendFiles(t, ".sse") {
		raw, _ := os.ReadFile(f)
		name := strings.TrimSuffix(filepath.Base(f), ".sse")
		t.Run(name, func(t *testing.T) {
			var out wiretest.Sink
			turn := &openai.Turn{ID: "msg_GOLDEN"}
			st := NewStream(&out, turn, ar, "hermes", req.PromptTokens)
			if err := st.Run(wiretest.EventsOf(raw)); err != nil {
				t.Fatal(err)
			}
			u, counted := st.Relayed()
			b, _ := json.Marshal(u)
			fmt.Fprintf(&out.Out, "# usage %s, counted %d, finish %v\n", b, counted, turn.Finish)
			wiretest.Golden(t, *update, name+".messages.sse", out.Out.Bytes())
		})
	}
}

func TestGoldenAnswers(t *testing.T) {
	ar, req := translated(t, stopRequest)
	for _, f := range backendFiles(t, ".json") {
		raw, _ := os.ReadFile(f)
		name := strings.TrimSuffix(filepath.Base(f), ".json")
		t.Run(name, func(t *testing.T) {
			comp := new(chunk.Chunk)
			var u *openai.Usage
			if err := chunk.Parse(raw, comp); err != nil || openai.ReadUsage(comp.Usage, &u) != nil {
				t.Fatalf("backend answer: %v", err)
			}
			if u == nil {
				u = openai.CountCompletion(req, comp.Choices)
			}
			msg, err := ar.Answer("msg_GOLDEN", "hermes", comp, u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(msg)
			wiretest.Golden(t, *update, name+".messages.json", b)
		})
	}
}
