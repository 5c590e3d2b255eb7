package gateway

import (
	"fmt"
	"io"
	"net/http"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

// embed calls a backend for embeddings and relays its answer: the
// inputs' tokens charged as the backend counts them.
func (s *Server) embed(w http.ResponseWriter, r *http.Request, c *call, req *openai.Request, m *models.Model) error {
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
		return unreadable(m.Name, fmt.Errorf("backend %s: malformed embeddings: %.200q", resp.Backend.Name, raw))
	}
	if c.usage == nil {
		c.usage, c.counted = openai.OwnCount(req.PromptTokens, 0), true
	}
	out, err := openai.CompatResponse(raw, "", "", m.Name, false, nil)
	if err != nil {
		return unreadable(m.Name, fmt.Errorf("backend %s: malformed embeddings: %w", resp.Backend.Name, err))
	}
	w.Header().Set("X-Obol-Cost", s.cost(c, c.usage).USD())
	writeAnswer(w, out)
	return nil
}
