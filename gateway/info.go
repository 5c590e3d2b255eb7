package gateway

import (
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/crockford"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/wire/anthropic"
)

// modelInfo is an OpenAI model object plus what obol's clients need.
type modelInfo struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	ContextWindow int    `json:"context_window"`
	Description   string `json:"description"`
	Vision        bool   `json:"vision"`
	// Serves are the routes that take the model: chat (chat completions
	// and responses), completions, embeddings.
	Serves []string `json:"serves"`
	// Pricing is the price in effect now, in USD per million tokens; null
	// when the model has none (its tokens cost nothing).
	Pricing *pricing `json:"pricing"`
}

// pricing is a price as /v1/models shows it.
type pricing struct {
	Input       perMillion `json:"input"`
	CachedInput perMillion `json:"cached_input"`
	// CacheWrite and CacheWrite1h are prompt tokens written to the
	// backend's cache for five minutes and for an hour.
	CacheWrite   perMillion `json:"cache_write"`
	CacheWrite1h perMillion `json:"cache_write_1h"`
	Output       perMillion `json:"output"`
	Currency     string     `json:"currency"`
	// Next is the next dated price change, if one is configured.
	Next *datedPricing `json:"next,omitempty"`
}

type datedPricing struct {
	From time.Time `json:"from"`
	pricing
}

// perMillion is a per-token price shown per million tokens, exactly.
type perMillion money.Money

func (p perMillion) MarshalJSON() ([]byte, error) {
	return []byte((money.Money(p) * 1_000_000).USD()), nil
}

func pricingOf(ps money.Prices, now time.Time) *pricing {
	cur := ps.At(now)
	if cur == nil {
		return nil
	}
	p := pricingFrom(cur)
	for _, n := range ps {
		if n.From.After(now) {
			p.Next = &datedPricing{From: n.From, pricing: *pricingFrom(&n)}
			break
		}
	}
	return p
}

func pricingFrom(p *money.Price) *pricing {
	return &pricing{Input: perMillion(p.Input), CachedInput: perMillion(p.CachedInput), CacheWrite: perMillion(p.CacheWrite),
		CacheWrite1h: perMillion(p.CacheWrite1h), Output: perMillion(p.Output), Currency: "usd"}
}

// started is the models' "created" time: they exist from the gateway's start.
var started = time.Now().Unix()

func (s *Server) info(c *call, m *models.Model) modelInfo {
	mi := modelInfo{Pricing: pricingOf(c.live.Prices[m.Name], time.Now()), ID: m.Name, Object: "model", Created: started, OwnedBy: "obol",
		ContextWindow: m.ContextWindow, Description: m.Description, Vision: m.Vision, Serves: []string{}}
	for _, api := range []struct {
		api  models.API
		name string
	}{{models.ChatAPI, "chat"}, {models.CompletionsAPI, "completions"}, {models.EmbeddingsAPI, "embeddings"}} {
		if m.Serves(api.api) {
			mi.Serves = append(mi.Serves, api.name)
		}
	}
	return mi
}

// listModels is GET /v1/models: the models this key may use.
// listModels is GET /v1/models: OpenAI's list, or Anthropic's for a
// request that carries anthropic-version.
func (s *Server) listModels(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	if wantsAnthropic(r) {
		speaksAnthropic(w, c)
	}
	if err := s.authenticate(r, c, keys.ScopeModels, "GET /v1/models"); err != nil {
		return err
	}
	s.peekHeaders(w, r, c)
	if c.anthropic {
		var ms []anthropic.ModelInfo
		for _, m := range c.live.Catalog.List() {
			if c.key.Allows(m.Name) {
				ms = append(ms, s.anthropicModel(c, m))
			}
		}
		return httpapi.WriteJSON(w, http.StatusOK, anthropic.Models(ms))
	}
	list := struct {
		Object string      `json:"object"`
		Data   []modelInfo `json:"data"`
	}{Object: "list", Data: []modelInfo{}}
	for _, m := range c.live.Catalog.List() {
		if c.key.Allows(m.Name) {
			list.Data = append(list.Data, s.info(c, m))
		}
	}
	return httpapi.WriteJSON(w, http.StatusOK, list)
}

// getModel is GET /v1/models/{model}.
func (s *Server) getModel(w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *call) error {
	if wantsAnthropic(r) {
		speaksAnthropic(w, c)
	}
	if err := s.authenticate(r, c, keys.ScopeModels, "GET /v1/models"); err != nil {
		return err
	}
	s.peekHeaders(w, r, c)
	m := c.live.Catalog.Get(ps.ByName("model"))
	if m == nil || !c.key.Allows(m.Name) {
		return &apierr.Error{Code: apierr.CodeNotFound, Param: "model",
			Message: "the model " + clip.String(ps.ByName("model"), 40) + " does not exist"}
	}
	if c.anthropic {
		return httpapi.WriteJSON(w, http.StatusOK, s.anthropicModel(c, m))
	}
	return httpapi.WriteJSON(w, http.StatusOK, s.info(c, m))
}

// healthz is liveness: the process serves HTTP.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ httprouter.Params) {
	w.Header().Set("X-Request-Id", crockford.NewID("req"))
	httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}
