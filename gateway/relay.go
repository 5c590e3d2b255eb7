package gateway

import (
	"errors"
	"net/http"

	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/wire/openai"
)

// Stream outcomes, as the access log reports them.
const (
	outcomeCompleted     = "completed"
	outcomeClientGone    = "client_gone"
	outcomeUpstreamError = "upstream_error"
	outcomeShutdown      = "shutdown" // cut by the end of the shutdown grace
)

// stream relays a backend's SSE stream to the client, event by event, in
// the shape newStreamer makes.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, c *call, req *openai.Request, m *models.Model, newStreamer func(*sseWriter) openai.Streamer) error {
	c.stream = true
	s.metrics.streams.Add(r.Context(), 1)
	defer s.metrics.streams.Add(r.Context(), -1)
	out := newSSE(w, c.live.KeepAlive)
	defer out.stop()
	resp, err := s.callBackend(r.Context(), c, m, req, true)
	if err != nil {
		if !out.stop() {
			return err // nothing sent yet: a proper status and JSON error
		}
		c.started = true
		c.outcome = outcomeUpstreamError
		newStreamer(out).Fail(asError(err, m.Name))
		return err
	}
	defer resp.Close()
	// The streamer is made once the backend is known: the Messages route
	// relays an Anthropic backend's events as they are.
	events := eventsOf(c, resp)
	st := newStreamer(out)
	err = st.Run(events)
	if err != nil && r.Context().Err() == nil && !errors.Is(err, openai.ErrClientGone) && !out.stop() {
		return err // failed before the first byte: still a proper status
	}
	c.started = true
	u, counted := st.Relayed()
	c.usage = u
	if c.meter != nil && c.meter.Usage() != nil {
		c.usage = c.meter.Usage() // what the backend reported, and the count past it of a stream cut short
	}
	if c.usage == nil {
		c.usage, c.counted = openai.OwnCount(req.PromptTokens, counted), true
	}
	switch {
	case err == nil:
		c.outcome = outcomeCompleted
		return nil
	case s.abort.Err() != nil:
		c.outcome = outcomeShutdown
		st.Fail(errShuttingDown)
		return errShuttingDown
	case r.Context().Err() != nil || errors.Is(err, openai.ErrClientGone):
		c.outcome = outcomeClientGone
		return nil
	}
	c.outcome = outcomeUpstreamError
	e := asError(err, m.Name)
	st.Fail(e)
	return e
}

// chatStreamer is the chat relay, native or OpenAI-shaped.
func (s *Server) chatStreamer(c *call, req *openai.Request, m *models.Model, native bool) func(*sseWriter) openai.Streamer {
	return func(out *sseWriter) openai.Streamer {
		return openai.NewChatStream(out, &c.Turn, req, m.Name, native, func(u *openai.Usage) money.Money { return s.cost(c, u) })
	}
}
