package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/wire/anthropic"
	"github.com/obol/obol/wire/openai"
)

// prepare runs what every route that calls a model does before it is
// admitted: authenticate, read and decode the body, find the model, and
// check the key's access and the model's limits. streamRoute: the route
// always streams.
func (s *Server) prepare(w http.ResponseWriter, r *http.Request, c *call, api models.API, decode func([]byte) (*openai.Request, error), streamRoute bool) (*openai.Request, *models.Model, error) {
	// Any chat scope gets the body read; which one is needed depends on
	// whether the answer streams, which the body says.
	if err := s.authenticate(r, c, "", ""); err != nil {
		return nil, nil, err
	}
	if !c.key.Has(keys.ScopeChatStream) {
		return nil, nil, needScope(keys.ScopeChat, r.URL.Path)
	}
	body, err := s.readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	req, err := decode(body)
	if err != nil {
		return nil, nil, err
	}
	req.API, c.upstream = api, api
	if !streamRoute && !req.Stream && !c.key.Has(keys.ScopeChat) {
		return nil, nil, needScope(keys.ScopeChat, "a complete (non-streamed) answer")
	}
	m, err := s.modelFor(c, req.Model, api)
	if err != nil {
		return nil, nil, err
	}
	if err := req.Check(m); err != nil {
		return nil, nil, err
	}
	req.CapOutput(m)
	return req, m, nil
}

// readBody reads a request body within max_body_bytes; the time it may
// take is bounded by the server (limitBody).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		var e *apierr.Error
		switch {
		case errors.As(err, &mbe):
			return nil, &apierr.Error{Code: apierr.CodeTooLarge, Message: fmt.Sprintf("the request body is over the limit of %d bytes", mbe.Limit)}
		case errors.As(err, &e):
			return nil, e
		case r.Context().Err() != nil:
			return nil, r.Context().Err() // the client left (a reset stream, a closed connection)
		}
		return nil, apierr.BadRequest("", "the request body could not be read")
	}
	return body, nil
}

// modelFor is the model a request names, if it exists, the key may use
// it, and its backends serve api.
func (s *Server) modelFor(c *call, name string, api models.API) (*models.Model, error) {
	m := c.live.Catalog.Get(name)
	if m == nil {
		return nil, &apierr.Error{Code: apierr.CodeNotFound, Param: "model",
			Message: fmt.Sprintf("the model %q does not exist; GET /v1/models lists the models", clip.String(name, 40))}
	}
	c.model = m.Name
	if !c.key.Allows(m.Name) {
		return nil, &apierr.Error{Code: apierr.CodeForbidden, Param: "model", Message: "this API key may not use the model " + m.Name}
	}
	if !m.Serves(api) {
		return nil, apierr.BadRequest("model", fmt.Sprintf("the model %s does not serve /v1/%s; GET /v1/models says what each model serves", m.Name, api))
	}
	return m, nil
}

// complete relays a non-streaming answer. The native shape is rebuilt; the
// OpenAI shape keeps every field the backend sent, with the gateway's id
// and the public model name.
func (s *Server) complete(w http.ResponseWriter, r *http.Request, c *call, req *openai.Request, m *models.Model, native bool) error {
	raw, comp, err := s.fetch(r, c, req, m)
	if err != nil {
		return err
	}
	var out []byte
	cost := s.cost(c, c.usage)
	if native {
		out = openai.AppendNativeResponse(make([]byte, 0, len(raw)+128), c.ID, comp.Created, m.Name, comp, c.usage.WithCost(cost))
	} else if out, err = openai.CompatResponse(raw, c.ID, req.Object(), m.Name, comp.Usage == nil, c.usage); err != nil {
		return unreadable(m.Name, fmt.Errorf("backend %s: malformed completion: %w", c.backend, err))
	} else {
		w.Header().Set("X-Obol-Cost", cost.USD())
	}
	writeAnswer(w, out)
	return nil
}

// unreadable is the answer to a backend's answer that cannot be read.
func unreadable(model string, err error) *apierr.Error {
	return &apierr.Error{Code: apierr.CodeUpstreamError, Message: "the backend for " + model + " sent an unreadable answer", Err: err}
}

// writeAnswer writes a whole JSON answer.
func writeAnswer(w http.ResponseWriter, out []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.Write(out)
}

// fetch calls a backend for an answer not streamed and reads it whole:
// its choices, and its usage (or the gateway's count) into c.
func (s *Server) fetch(r *http.Request, c *call, req *openai.Request, m *models.Model) ([]byte, *chunk.Chunk, error) {
	ctx, cancel := s.detached(r)
	defer cancel()
	resp, err := s.callBackend(ctx, c, m, req, false)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Close()
	// models read the answer whole, within its bound, before it came here.
	raw, err := io.ReadAll(upstreamTimer{resp.Body, &c.Upstream})
	if err != nil {
		return nil, nil, err
	}
	if r.Context().Err() != nil {
		c.outcome = outcomeClientGone // still recorded: the backend generated it
	}
	if c.dialect == models.Anthropic {
		if c.pass != nil {
			out, u, err := anthropic.PassAnswer(raw, c.ID, m.Name)
			if err != nil {
				return nil, nil, unreadable(m.Name, fmt.Errorf("backend %s: %w", resp.Backend.Name, err))
			}
			c.usage = u
			return out, nil, nil // the Messages route writes it as it is
		}
		if raw, _, err = anthropic.ToChat(raw); err != nil {
			return nil, nil, unreadable(m.Name, fmt.Errorf("backend %s: %w", resp.Backend.Name, err))
		}
	}
	comp := new(chunk.Chunk)
	if err := chunk.Parse(raw, comp); err != nil || comp.Choices == nil || jsonobj.IsNull(comp.Choices) || openai.ReadUsage(comp.Usage, &c.usage) != nil {
		return nil, nil, unreadable(m.Name, fmt.Errorf("backend %s: malformed completion: %.200q", resp.Backend.Name, raw))
	}
	c.Finish = comp.Finish
	if c.usage == nil {
		c.usage, c.counted = openai.CountCompletion(req, comp.Choices), true
	}
	if comp.Created == 0 {
		comp.Created = time.Now().Unix()
	}
	return raw, comp, nil
}

// callBackend sends the request to one of m's backends, in the backend's
// dialect (models picks it and fails over), counting the wait as upstream
// time.
func (s *Server) callBackend(ctx context.Context, c *call, m *models.Model, req *openai.Request, stream bool) (*models.Response, error) {
	body := models.Body{OpenAI: func() ([]byte, error) {
		if c.unportable != nil {
			return nil, c.unportable
		}
		return req.UpstreamBody(stream), nil
	}}
	if m.Speaks(models.Anthropic) {
		body.Anthropic = func() ([]byte, error) {
			if c.pass != nil {
				return anthropic.PassBody(c.pass, req.MaxTokens)
			}
			return anthropic.FromChat(req.UpstreamBody(stream))
		}
		body.Beta = c.beta
	}
	sent := time.Now()
	resp, err := s.up.Send(ctx, m, req.API, body, stream)
	c.Upstream += time.Since(sent)
	if err != nil {
		var ue *models.UpstreamError
		var ce *models.ConnectError
		switch { // the backend that failed last, for the request log
		case errors.As(err, &ue):
			c.backend = ue.Backend
		case errors.As(err, &ce):
			c.backend = ce.Backend
		}
		return nil, err
	}
	c.backend, c.dialect = resp.Backend.Name, resp.Backend.Dialect
	return resp, nil
}

// eventsOf are a stream's events as the route's streamer reads them: an
// Anthropic backend's as chat chunks, but on the Messages route, which
// relays them as they are.
func eventsOf(c *call, resp *models.Response) openai.Events {
	if c.dialect != models.Anthropic || c.pass != nil {
		return resp.Events
	}
	ce := anthropic.NewChatEvents(resp.Events)
	c.meter = &ce.Meter
	return ce
}

// detached is the context of a non-streaming backend call. It outlives
// the client: the backend cannot be told to stop early without losing the
// count of what it generated, so its answer is read and recorded even for
// a client that left (as the hosted APIs bill it). It ends when the
// server aborts, and the model's total timeout still bounds the call.
func (s *Server) detached(r *http.Request) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(s.abort, cancel)
	return ctx, func() { stop(); cancel() }
}
