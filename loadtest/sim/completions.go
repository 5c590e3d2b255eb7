package sim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// legacyRequest is a /v1/completions request.
type legacyRequest struct {
	Model         string          `json:"model"`
	Prompt        json.RawMessage `json:"prompt"`
	MaxTokens     *int            `json:"max_tokens"`
	N             int             `json:"n"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

// completions answers the legacy text completion route as vLLM does: one
// choice per prompt and n, max_tokens 16 when unset (OpenAI's default).
func (s *Server) completions(w http.ResponseWriter, r *http.Request, cfg *Config) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return
	}
	var req legacyRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Model == "" || len(req.Prompt) == 0 {
		writeError(w, http.StatusBadRequest, "model and prompt are required", "BadRequestError")
		return
	}
	prompts := textInputs(req.Prompt)
	if prompts == nil {
		writeError(w, http.StatusBadRequest, "prompt must be a string or an array of strings", "BadRequestError")
		return
	}
	max := 16
	if req.MaxTokens != nil {
		max = *req.MaxTokens
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	if !s.begin(w, r, cfg, Request{Model: req.Model, Stream: req.Stream, IncludeUsage: includeUsage, MaxTokens: max, Body: body}) {
		return
	}
	prompt := 0
	for _, p := range prompts {
		n := len(strings.Fields(p))
		if cfg.WorstCase {
			n = len(p) + 1 // a token a byte, and one to begin
		}
		prompt += n
	}
	g := s.newGeneration(r.Context(), cfg, "cmpl", req.Model, prompt, max1(req.N)*len(prompts), max)
	if req.Stream {
		g.stream(w, textEvents{g}, includeUsage && !cfg.NoUsage, false)
	} else {
		g.complete(w, textEvents{g})
	}
}

// textInputs reads a string or an array of strings; nil if neither.
func textInputs(raw json.RawMessage) []string {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return many
	}
	return nil
}
