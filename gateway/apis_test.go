package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"

	openai "github.com/sashabaranov/go-openai"

	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/models"
	"github.com/obol/obol/quota"
)

// withAPIs makes hermes serve every API; charon stays chat only.
func withAPIs(c *envConfig) {
	c.models[0].APIs = []models.API{models.ChatAPI, models.CompletionsAPI, models.EmbeddingsAPI}
}

// TestEmbeddings: OpenAI's shape through go-openai, the backend's count
// recorded, and a model that does not serve embeddings refused.
func TestEmbeddings(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAPIs)
	c := goClient(e.gw.URL, keyAll)
	resp, err := c.CreateEmbeddings(context.Background(), openai.EmbeddingRequest{Model: "hermes", Input: []string{"one two", "three"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Data) != 2 || len(resp.Data[0].Embedding) != sim.EmbeddingDimensions || resp.Usage.PromptTokens != 3 || string(resp.Model) != "hermes" {
		t.Errorf("embeddings: %+v", resp)
	}
	s := e.waitRecorded(t, keyAll, 1)
	if row := s.ByModel["hermes"]; row.Prompt != 3 || row.Completion != 0 {
		t.Errorf("ledger: %+v", row)
	}
	r := e.post(t, "/v1/embeddings", keyAll, `{"model":"charon","input":"x"}`)
	if e := readError(t, r); r.StatusCode != 400 || !strings.Contains(e.Error.Message, "does not serve /v1/embeddings") {
		t.Errorf("charon: %d %+v", r.StatusCode, e)
	}
	r = e.post(t, "/v1/embeddings", keyAll, `{"model":"hermes","input":[]}`)
	if r.StatusCode != 400 {
		t.Errorf("empty input: %d", r.StatusCode)
	}
}

// TestEmbeddingsReserveInput: the input's tokens are reserved against
// TPM: one larger than the whole allowance is refused up front.
func TestEmbeddingsReserveInput(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAPIs, withLimits(keyAll, quota.Limits{TPM: 10}))
	r := e.post(t, "/v1/embeddings", keyAll, `{"model":"hermes","input":"`+strings.Repeat("word ", 20)+`"}`)
	io.Copy(io.Discard, r.Body)
	if r.StatusCode != 429 || e.sim.Stats().Requests != 0 {
		t.Errorf("100 characters against TPM 10: %d, backend called %d times", r.StatusCode, e.sim.Stats().Requests)
	}
}

// TestLegacyCompletions: text_completion answers, streamed and not, with
// the gateway's id and the public model, recorded; max_tokens defaults to
// OpenAI's 16 and is what the backend is held to.
func TestLegacyCompletions(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 20}, withAPIs)
	c := goClient(e.gw.URL, keyAll)
	resp, err := c.CreateCompletion(context.Background(), openai.CompletionRequest{Model: "hermes", Prompt: "Say hello"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Object != "text_completion" || resp.Model != "hermes" || !strings.HasPrefix(resp.ID, "cmpl_") ||
		resp.Choices[0].Text != sim.Reply(16) || resp.Usage.CompletionTokens != 16 {
		t.Errorf("completion: %+v", resp)
	}
	if reqs := e.sim.Requests(); reqs[0].MaxTokens != 16 {
		t.Errorf("the backend was sent max_tokens %d, want 16", reqs[0].MaxTokens)
	}
	r := e.post(t, "/v1/completions", keyAll, `{"model":"hermes","prompt":"hi","max_tokens":3,"stream":true,"stream_options":{"include_usage":true}}`)
	events, _ := readEvents(t, r.Body)
	text := ""
	for _, ev := range events[:len(events)-1] {
		if ev.m["object"] != "text_completion" || ev.m["model"] != "hermes" {
			t.Errorf("chunk %s", ev.raw)
		}
		for _, ch := range ev.m["choices"].([]any) {
			text += ch.(map[string]any)["text"].(string)
		}
	}
	last, _ := json.Marshal(events[len(events)-2].m["usage"])
	if text != sim.Reply(3) || !events[len(events)-1].done || !strings.Contains(string(last), `"completion_tokens":3`) {
		t.Errorf("stream: %q, usage %s", text, last)
	}
	s := e.waitRecorded(t, keyAll, 2)
	if row := s.ByModel["hermes"]; row.Completion != 19 {
		t.Errorf("ledger: %+v", row)
	}
	r = e.post(t, "/v1/completions", keyAll, `{"model":"charon","prompt":"x"}`)
	if r.StatusCode != 400 {
		t.Errorf("charon: %d", r.StatusCode)
	}
}
