package gateway

import (
	"fmt"
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

// responses is POST /v1/responses: OpenAI's Responses API, the stateless
// subset, translated to the model's backends' Chat Completions and back.
// Nothing is stored: store: true, previous_response_id and conversation
// are refused. Admitted, settled and recorded as chat is.
func (s *Server) responses(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	var rr *openai.ResponsesRequest
	decode := func(body []byte) (*openai.Request, error) {
		var chatBody []byte
		var err error
		if rr, chatBody, err = openai.TranslateResponses(body); err != nil {
			return nil, err
		}
		return openai.DecodeChat(chatBody)
	}
	req, m, err := s.prepare(w, r, c, models.ChatAPI, decode, false)
	if err != nil {
		return err
	}
	if req.Stream {
		return s.stream(w, r, c, req, m, func(out *sseWriter) openai.Streamer {
			return openai.NewResponseStream(out, &c.Turn, rr, m.Name, req.PromptTokens)
		})
	}
	_, comp, err := s.fetch(r, c, req, m)
	if err != nil {
		return err
	}
	out, err := rr.Answer(&c.Turn, m.Name, comp, c.usage)
	if err != nil {
		return &apierr.Error{Code: apierr.CodeUpstreamError, Message: "the backend for " + m.Name + " sent an unreadable answer",
			Err: fmt.Errorf("backend %s: %w", c.backend, err)}
	}
	w.Header().Set("X-Obol-Cost", s.cost(c, c.usage).USD())
	return httpapi.WriteJSON(w, http.StatusOK, out)
}
