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
)

// maxEmbeddingInputs is OpenAI's bound on the inputs of one request.
const maxEmbeddingInputs = 2048

// embeddings is POST /v1/embeddings, OpenAI's shape, for models whose
// backends serve it: the inputs' tokens are reserved, charged as the
// backend counts them, recorded, and count against TPM and TPD.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.EmbeddingsAPI, decodeEmbeddings, false)
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
	if err := chunk.Parse(raw, &ans); err != nil || readUsage(ans.Usage, &c.usage) != nil {
		return &apierr.Error{Code: apierr.CodeUpstreamError, Message: "the backend for " + m.Name + " sent an unreadable answer",
			Err: fmt.Errorf("backend %s: malformed embeddings: %.200q", resp.Backend.Name, raw)}
	}
	if c.usage == nil {
		c.usage, c.counted = &Usage{PromptTokens: req.PromptTokens, TotalTokens: req.PromptTokens}, true
	}
	out, err := compatResponse(raw, "", "", m.Name, false, nil)
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

// decodeEmbeddings parses and checks an embeddings body: its input is
// what is reserved and charged.
func decodeEmbeddings(body []byte) (*chatRequest, error) {
	c, err := newRequest(body, embeddingShape)
	if err != nil {
		return nil, err
	}
	items, err := c.textOrTokens("input")
	if err != nil {
		return nil, err
	}
	if items > maxEmbeddingInputs {
		return nil, apierr.BadRequest("input", fmt.Sprintf("input has %d items; at most %d", items, maxEmbeddingInputs))
	}
	c.template, c.N = templatePerInput*items, 1
	return c, nil
}
