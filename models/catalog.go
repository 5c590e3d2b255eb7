// Package models is the model catalog: the public model names the gateway
// serves, the upstream backends behind each, and the client that calls them.
package models

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Dialect is the API a backend speaks.
type Dialect string

// The dialects.
const (
	// OpenAI is OpenAI's Chat Completions (and completions, embeddings):
	// vLLM, Ollama, llama.cpp, OpenAI and most hosted servers.
	OpenAI Dialect = "openai"
	// Anthropic is Anthropic's Messages API: Anthropic itself, or a
	// server's Messages endpoint.
	Anthropic Dialect = "anthropic"
)

// AnthropicVersion is the anthropic-version obol sends.
const AnthropicVersion = "2023-06-01"

// Backend is one server that serves a model.
type Backend struct {
	Name    string  // unique among a model's backends; shown to operators, never to clients
	URL     string  // base URL, e.g. http://127.0.0.1:9000/v1
	Model   string  // the backend's own model name
	Dialect Dialect // "" is OpenAI
	APIKey  string  // a bearer token (x-api-key to Anthropic); never logged
	// Weight is the backend's share among backends of its priority; 0
	// means 1.
	Weight int
	// Priority orders backends: 0 first; a higher number is used only
	// when every backend of a lower one is unavailable.
	Priority int
	// MaxConcurrency caps the requests in flight to it; 0 is no cap.
	MaxConcurrency int
	// ContinuousUsage asks a vLLM backend for usage in every stream chunk
	// (stream_options.continuous_usage_stats), so that a stream cut short
	// is charged by the backend's own count, prompt included, instead of
	// the gateway's estimate. Other servers may refuse the option.
	ContinuousUsage bool
	// H2C: the backend speaks HTTP/2 without TLS (prior knowledge, an
	// http:// URL), so that its streams share a few connections instead
	// of holding one each.
	H2C bool
}

// Timeouts bound each phase of an upstream call.
type Timeouts struct {
	Connect    time.Duration // TCP (and TLS) connect
	FirstToken time.Duration // from the call to the first byte of a stream's body
	Idle       time.Duration // longest gap between two reads of a stream
	Total      time.Duration // the whole call, body included
}

// DefaultTimeouts apply where a model sets none.
var DefaultTimeouts = Timeouts{
	Connect:    5 * time.Second,
	FirstToken: 2 * time.Minute,
	Idle:       time.Minute,
	Total:      15 * time.Minute,
}

func (t Timeouts) withDefaults() Timeouts {
	if t.Connect <= 0 {
		t.Connect = DefaultTimeouts.Connect
	}
	if t.FirstToken <= 0 {
		t.FirstToken = DefaultTimeouts.FirstToken
	}
	if t.Idle <= 0 {
		t.Idle = DefaultTimeouts.Idle
	}
	if t.Total <= 0 {
		t.Total = DefaultTimeouts.Total
	}
	return t
}

// DefaultMaxOutputTokens is a model's assumed output cap when none is set.
const DefaultMaxOutputTokens = 4096

// DefaultImageTokens is what one image may cost when a model says
// nothing: OpenAI's most for one high-detail image (a 768×2048 fit of
// eight 512-pixel tiles at 170 tokens, plus 85).
const DefaultImageTokens = 1445

// API is an OpenAI route a backend may serve, as its path under the
// backend's base URL.
type API string

// The APIs a model may serve.
const (
	ChatAPI        API = "chat/completions"
	CompletionsAPI API = "completions" // legacy text completions
	EmbeddingsAPI  API = "embeddings"
)

// Model is a public model name and what serves it.
type Model struct {
	// APIs are what its backends serve; nil means ChatAPI alone.
	APIs          []API
	Name          string
	Description   string
	ContextWindow int
	// MaxOutputTokens is the output cap assumed where a request sets no
	// max_tokens (quota reservations use it); 0 means
	// DefaultMaxOutputTokens or the context window, whichever is smaller.
	MaxOutputTokens int
	Vision          bool
	// ImageTokens is the most one image can cost on its backends, which
	// admission holds per image; 0 means DefaultImageTokens.
	ImageTokens int
	Timeouts    Timeouts
	// MaxAttempts bounds the backends one request may try; 0 means
	// all of them, at most 3.
	MaxAttempts int
	Backends    []Backend
	// Aliases are other names clients call it by (a client's own model
	// ids, such as claude-sonnet-4-5): exact, or a prefix ending in "*".
	Aliases []string
}

// Speaks reports whether any of the model's backends speaks d.
func (m *Model) Speaks(d Dialect) bool {
	for i := range m.Backends {
		if m.Backends[i].dialect() == d {
			return true
		}
	}
	return false
}

func (b *Backend) dialect() Dialect {
	if b.Dialect == "" {
		return OpenAI
	}
	return b.Dialect
}

// Serves reports whether the model's backends serve api.
func (m *Model) Serves(api API) bool {
	if m.APIs == nil {
		return api == ChatAPI
	}
	return slices.Contains(m.APIs, api)
}

func (m *Model) attempts() int {
	if m.MaxAttempts > 0 {
		return m.MaxAttempts
	}
	return min(len(m.Backends), 3)
}

// Catalog is the set of models, fixed at start.
type Catalog struct {
	byName   map[string]*Model // names and exact aliases
	list     []*Model
	prefixes []prefixAlias // longest first
}

// NewCatalog checks the models and returns them as a catalog, listed by name.
func NewCatalog(models []Model) (*Catalog, error) {
	c := &Catalog{byName: make(map[string]*Model, len(models))}
	for i := range models {
		m := models[i]
		if m.Name == "" {
			return nil, fmt.Errorf("model %d: empty name", i)
		}
		if _, dup := c.byName[m.Name]; dup {
			return nil, fmt.Errorf("model %s: defined twice", m.Name)
		}
		if len(m.Backends) == 0 {
			return nil, fmt.Errorf("model %s: no backends", m.Name)
		}
		if m.ContextWindow <= 0 {
			return nil, fmt.Errorf("model %s: context window must be positive", m.Name)
		}
		if m.MaxOutputTokens <= 0 {
			m.MaxOutputTokens = min(DefaultMaxOutputTokens, m.ContextWindow)
		}
		if m.ImageTokens <= 0 {
			m.ImageTokens = DefaultImageTokens
		}
		m.Timeouts = m.Timeouts.withDefaults()
		m.Backends = append([]Backend(nil), m.Backends...)
		for j := range m.Backends {
			if m.Backends[j].Weight <= 0 {
				m.Backends[j].Weight = 1
			}
		}
		c.byName[m.Name] = &m
		c.list = append(c.list, &m)
	}
	sort.Slice(c.list, func(i, j int) bool { return c.list[i].Name < c.list[j].Name })
	if err := c.addAliases(); err != nil {
		return nil, err
	}
	return c, nil
}

// Get returns the model with the public name or one of its aliases, or
// nil.
func (c *Catalog) Get(name string) *Model {
	if m := c.byName[name]; m != nil {
		return m
	}
	return c.byPrefix(name)
}

// List returns every model, by name.
func (c *Catalog) List() []*Model { return c.list }
