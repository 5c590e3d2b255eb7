package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

// embeddings is POST /v1/embeddings, OpenAI's shape, for models whose
// backends serve it: the inputs' tokens are reserved, charged as the
// backend counts them, recorded, and count against TPM and TPD.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.EmbeddingsAPI, openai.DecodeEmbeddings, false)
	if err != nil {
		return err
	}
	ctx, cancel := s.detached(r)
	defer cancel()
	resp, err := s.callBackend(ctx, c, m, req, false)
	if err != nil {
		return err
	}
	defer resp.Close()
	raw, err := io.ReadAll(resp.Body) // read whole by models, within its bound
	if err != nil {
		return err
	}
	var ans chunk.Chunk
	if err := chunk.Parse(raw, &ans); err != nil || openai.ReadUsage(ans.Usage, &c.usage) != nil {
		return &apierr.Error{Code: apierr.CodeUpstreamError, Message: "the backend for " + m.Name + " sent an unreadable answer",
			Err: fmt.Errorf("backend %s: malformed embeddings: %.200q", resp.Backend.Name, raw)}
	}
	if c.usage == nil {
		c.usage, c.counted = &openai.Usage{PromptTokens: req.PromptTokens, TotalTokens: req.PromptTokens}, true
	}
	out, err := openai.CompatResponse(raw, "", "", m.Name, false, nil)
	if err != nil {
		return &apierr.Error{Code: apierr.CodeUpstreamError, Message: "the backend for " + m.Name + " sent an unreadable answer",
			Err: fmt.Errorf("backend %s: malformed embeddings: %w", resp.Backend.Name, err)}
	}
	w.Header().Set("X-Obol-Cost", s.cost(c, c.usage).USD())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
	return nil
}
