package gateway

import (
	"fmt"
	"net/http"

	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

// respond calls a backend for a complete answer and relays it as a
// Responses object.
func (s *Server) respond(w http.ResponseWriter, r *http.Request, c *call, req *openai.Request, rr *openai.ResponsesRequest, m *models.Model) error {
	_, comp, err := s.fetch(r, c, req, m)
	if err != nil {
		return err
	}
	out, err := rr.Answer(&c.Turn, m.Name, comp, c.usage)
	if err != nil {
		return unreadable(m.Name, fmt.Errorf("backend %s: %w", c.backend, err))
	}
	w.Header().Set("X-Obol-Cost", s.cost(c, c.usage).USD())
	return httpapi.WriteJSON(w, http.StatusOK, out)
}
