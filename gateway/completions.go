package gateway

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/openai"
)

// completions is POST /v1/completions, OpenAI's legacy text completions,
// for models whose backends serve them: admitted, relayed (streamed or
// not) and recorded as chat is.
func (s *Server) completions(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.CompletionsAPI, openai.DecodeCompletion, false)
	if err != nil {
		return err
	}
	if req.Stream {
		return s.stream(w, r, c, req, m, s.chatStreamer(c, req, m, false))
	}
	return s.complete(w, r, c, req, m, false)
}
