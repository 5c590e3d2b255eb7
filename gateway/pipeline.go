package gateway

import (
	"net/http"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/anthropic"
	"github.com/obol/obol/wire/openai"
)

// The routes that call a model, each a request's whole life read top to
// bottom: prepare (authenticate, read, decode, check) → admit (reserve
// under the key's and its project's limits) → call a backend and relay
// its answer or events → finish (answer an error, record, settle).

// chatCompletions is POST /v1/chat/completions, OpenAI's shape exactly;
// the body's "stream" chooses the answer.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.ChatAPI, openai.DecodeChat, false)
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	switch {
	case err == nil && req.Stream:
		err = s.stream(w, r, c, req, m, s.chatStreamer(c, req, m, false))
	case err == nil:
		err = s.complete(w, r, c, req, m, false)
	}
	return s.finish(w, r, c, err)
}

// chat is POST /v1/chat: one complete answer in the native shape.
func (s *Server) chat(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.ChatAPI, openai.DecodeChat, false)
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	if err == nil {
		err = s.complete(w, r, c, req, m, true)
	}
	return s.finish(w, r, c, err)
}

// chatStream is POST /v1/chat/stream: the native SSE stream.
func (s *Server) chatStream(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.ChatAPI, openai.DecodeChat, true)
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	if err == nil {
		err = s.stream(w, r, c, req, m, s.chatStreamer(c, req, m, true))
	}
	return s.finish(w, r, c, err)
}

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
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	switch {
	case err == nil && req.Stream:
		err = s.stream(w, r, c, req, m, func(out *sseWriter) openai.Streamer {
			return openai.NewResponseStream(out, &c.Turn, rr, m.Name, req.PromptTokens)
		})
	case err == nil:
		err = s.respond(w, r, c, req, rr, m)
	}
	return s.finish(w, r, c, err)
}

// completions is POST /v1/completions, OpenAI's legacy text completions,
// for models whose backends serve them: admitted, relayed (streamed or
// not) and recorded as chat is.
func (s *Server) completions(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.CompletionsAPI, openai.DecodeCompletion, false)
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	switch {
	case err == nil && req.Stream:
		err = s.stream(w, r, c, req, m, s.chatStreamer(c, req, m, false))
	case err == nil:
		err = s.complete(w, r, c, req, m, false)
	}
	return s.finish(w, r, c, err)
}

// embeddings is POST /v1/embeddings, OpenAI's shape, for models whose
// backends serve it: the inputs' tokens are reserved, charged as the
// backend counts them, recorded, and count against TPM and TPD.
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	req, m, err := s.prepare(w, r, c, models.EmbeddingsAPI, openai.DecodeEmbeddings, false)
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	if err == nil {
		err = s.embed(w, r, c, req, m)
	}
	return s.finish(w, r, c, err)
}

// messages is POST /v1/messages: Anthropic's Messages API, translated to
// the model's backends' Chat Completions and back; the body's "stream"
// chooses the answer. Admitted, settled and recorded as chat is.
func (s *Server) messages(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	speaksAnthropic(w, c)
	var ar *anthropic.Request
	decode := func(body []byte) (req *openai.Request, err error) {
		ar, req, err = anthropic.Translate(body)
		c.pass, c.beta = body, r.Header.Get("Anthropic-Beta") // for an Anthropic backend
		return req, err
	}
	req, m, err := s.prepare(w, r, c, models.ChatAPI, decode, false)
	if err == nil && ar.OnlyAnthropic != nil {
		if c.unportable = ar.OnlyAnthropic; !m.Speaks(models.Anthropic) {
			err = c.unportable
		}
	}
	if err == nil {
		err = s.admit(w, r, c, req, m)
	}
	switch {
	case err == nil && req.Stream:
		err = s.stream(w, r, c, req, m, func(out *sseWriter) openai.Streamer {
			if c.dialect == models.Anthropic {
				c.meter = new(anthropic.Meter)
				return anthropic.NewPassStream(out, &c.Turn, m.Name, c.meter)
			}
			return anthropic.NewStream(out, &c.Turn, ar, m.Name, req.PromptTokens)
		})
	case err == nil:
		err = s.answerMessage(w, r, c, req, ar, m)
	}
	return s.finish(w, r, c, err)
}

// countTokens is POST /v1/messages/count_tokens: the prompt estimate
// admission holds for the same request, admitted as a request (RPM,
// concurrency) that uses no tokens and costs nothing.
func (s *Server) countTokens(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	speaksAnthropic(w, c)
	decode := func(body []byte) (*openai.Request, error) {
		_, req, err := anthropic.TranslateCount(body)
		return req, err
	}
	req, m, err := s.prepare(w, r, c, models.ChatAPI, decode, false)
	if err == nil {
		err = s.admitFor(w, r, c, m, 0, 0)
	}
	if err == nil {
		err = httpapi.WriteJSON(w, http.StatusOK, map[string]int{"input_tokens": req.PromptTokens})
	}
	return s.finish(w, r, c, err)
}
