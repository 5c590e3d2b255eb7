package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/models"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/wire/anthropic"
	"github.com/obol/obol/wire/openai"
)

// Anthropic's routes: their errors and headers, the complete answer, and
// the model list in Anthropic's shape.

// speaksAnthropic marks c as answered in Anthropic's shapes, with its
// request-id header.
func speaksAnthropic(w http.ResponseWriter, c *call) {
	c.anthropic = true
	w.Header().Set("Request-Id", c.ID)
}

// answerMessage calls a backend for a complete answer and relays it as a
// Messages answer.
func (s *Server) answerMessage(w http.ResponseWriter, r *http.Request, c *call, req *openai.Request, ar *anthropic.Request, m *models.Model) error {
	raw, comp, err := s.fetch(r, c, req, m)
	if err != nil {
		return err
	}
	if comp == nil { // an Anthropic backend's answer, as it wrote it
		w.Header().Set("X-Obol-Cost", s.cost(c, c.usage).USD())
		writeAnswer(w, raw)
		return nil
	}
	msg, err := ar.Answer(c.ID, m.Name, comp, c.usage)
	if err != nil {
		return unreadable(m.Name, fmt.Errorf("backend %s: %w", c.backend, err))
	}
	w.Header().Set("X-Obol-Cost", s.cost(c, c.usage).USD())
	return httpapi.WriteJSON(w, http.StatusOK, msg)
}

// anthropicRateHeaders are Anthropic's rate-limit headers, from the same
// numbers as OpenAI's.
func anthropicRateHeaders(h http.Header, lim quota.Limits, d quota.Decision, now time.Time) {
	var requests, tokens *anthropic.Window
	if lim.RPM > 0 {
		requests = &anthropic.Window{Limit: lim.RPM, Remaining: d.RequestsRemaining, Reset: now.Add(d.RequestsReset)}
	}
	if lim.TPM > 0 {
		tokens = &anthropic.Window{Limit: lim.TPM, Remaining: d.TokensRemaining, Reset: now.Add(d.TokensReset)}
	}
	anthropic.RateHeaders(h, requests, tokens)
}

// wantsAnthropic reports whether a request is an Anthropic client's:
// every Anthropic SDK sends anthropic-version.
func wantsAnthropic(r *http.Request) bool { return r.Header.Get("Anthropic-Version") != "" }

// anthropicModel is m in Anthropic's model shape.
func (s *Server) anthropicModel(c *call, m *models.Model) anthropic.ModelInfo {
	return anthropic.Model(m.Name, m.Name, time.Unix(s.info(c, m).Created, 0))
}

// routeAPI is a route's API for the request log: its path under the
// version prefix (chat/completions, messages, …).
func routeAPI(route string) string {
	for _, p := range []string{"/anthropic/v1/", "/api/v1/", "/v1/"} {
		if rest, ok := strings.CutPrefix(route, p); ok {
			return rest
		}
	}
	return strings.TrimPrefix(route, "/")
}
