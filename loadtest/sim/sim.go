// Package sim is an upstream simulator: it answers /v1/chat/completions,
// /v1/completions, /v1/embeddings and /v1/models the way vLLM and OpenAI
// do, and /v1/messages the way Anthropic does (anthropic.go), quirks included (a role-only first chunk, usage
// only when stream_options asks for it, n choices interleaved, tool calls
// streamed in pieces, error events mid-stream), with configurable pacing
// and injected faults.
//
// It is importable so that tests can run it over a real socket with
// httptest; the loadtest command serves it as a standalone process.
package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultKind names a failure the simulator injects.
type FaultKind int

const (
	// NoFault answers normally.
	NoFault FaultKind = iota
	// Status answers Fault.Status with an OpenAI error body instead of a completion.
	Status
	// StreamError sends an error event after Fault.After content chunks, then [DONE]
	// (as vLLM does when generation fails mid-stream). A non-streaming request gets a 500.
	StreamError
	// Disconnect drops the connection after Fault.After content chunks without
	// finishing the response.
	Disconnect
	// Hang stops answering after Fault.After content chunks (before the headers
	// for a non-streaming request) until the client gives up.
	Hang
)

// Fault is a failure to inject into every request while it is configured.
type Fault struct {
	Kind   FaultKind
	Status int // for Status
	After  int // content chunks sent before the fault strikes (streams)
	// Times, for Status, strikes only the first Times requests from when
	// the fault is configured; 0 strikes every one.
	Times int
}

// Config sets how the simulator answers. The zero value answers at once
// with DefaultReplyTokens tokens.
type Config struct {
	// ReplyTokens is the length of every reply, capped by the request's
	// max_tokens (finish_reason "length"). 0 means DefaultReplyTokens.
	ReplyTokens int
	// TokensPerSecond paces the tokens; 0 sends them as fast as possible.
	TokensPerSecond float64
	// FirstTokenDelay is waited before the first token.
	FirstTokenDelay time.Duration
	// DelayHeaders holds back a stream's response headers until the first
	// token, as some servers do, instead of sending them at once as vLLM does.
	DelayHeaders bool
	// NoUsage never reports usage, even when asked, as some servers do.
	NoUsage bool
	// APIKey, when set, is required as "Authorization: Bearer APIKey".
	APIKey string
	// CachedTokens and ReasoningTokens, when set, are reported in usage as
	// prompt_tokens_details.cached_tokens and
	// completion_tokens_details.reasoning_tokens (of the completion), as
	// OpenAI reports them.
	CachedTokens, ReasoningTokens int
	// CacheWrite5m and CacheWrite1h are the prompt tokens an Anthropic
	// answer reports written to the cache for five minutes and an hour
	// (CachedTokens are its cache reads). CacheWriteTotalOnly reports only
	// their total, cache_creation_input_tokens, as older answers do.
	CacheWrite5m, CacheWrite1h int
	CacheWriteTotalOnly        bool
	// WorstCase bills a prompt as the worst a byte-level tokenizer could:
	// a token per byte of what the model reads (WorstPrompt for chat; a
	// legacy prompt's or an embedding input's bytes and a begin token).
	WorstCase bool
	// Fingerprint and ServiceTier, when set, are sent as
	// system_fingerprint and service_tier in every answer and chunk.
	Fingerprint, ServiceTier string
	Fault                    Fault
}

// DefaultReplyTokens is the reply length when Config.ReplyTokens is 0.
const DefaultReplyTokens = 16

// Stats counts what the simulator saw and generated.
type Stats struct {
	Requests         int64 // chat completion requests received
	Completed        int64 // responses finished normally
	Cancelled        int64 // requests whose client went away before the end
	PromptTokens     int64 // prompt tokens of every request that generated anything
	CompletionTokens int64 // tokens generated, including those of cancelled requests
	ReportedPrompt   int64 // prompt tokens reported in usage objects
	ReportedTokens   int64 // completion tokens reported in usage objects
	MaxInFlight      int64 // the most generations running at once
}

// Request is what the simulator recorded of one request.
type Request struct {
	Model         string
	Stream        bool
	IncludeUsage  bool
	MaxTokens     int
	Authorization string
	Header        http.Header
	Body          []byte
}

// Server is the simulator; it is an http.Handler.
type Server struct {
	cfg atomic.Pointer[Config]
	seq atomic.Int64

	requests, completed, cancelled     atomic.Int64
	promptTokens, completionTokens     atomic.Int64
	reportedPrompt, reportedCompletion atomic.Int64
	inFlight, maxInFlight              atomic.Int64

	mu       sync.Mutex
	recorded []Request
	record   bool
	struck   atomic.Int64 // requests a Status fault struck since SetConfig
}

// New returns a simulator answering as cfg says.
func New(cfg Config) *Server {
	s := &Server{}
	s.SetConfig(cfg)
	return s
}

// SetConfig changes how the following requests are answered.
func (s *Server) SetConfig(cfg Config) {
	s.struck.Store(0)
	s.cfg.Store(&cfg)
}

// Config returns the configuration in force.
func (s *Server) Config() Config { return *s.cfg.Load() }

// Record makes the simulator keep every request (for tests; off by default
// so that long load runs do not grow without bound).
func (s *Server) Record(on bool) {
	s.mu.Lock()
	s.record = on
	s.mu.Unlock()
}

// Requests returns the recorded requests.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.recorded...)
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	return Stats{
		Requests:         s.requests.Load(),
		Completed:        s.completed.Load(),
		Cancelled:        s.cancelled.Load(),
		PromptTokens:     s.promptTokens.Load(),
		CompletionTokens: s.completionTokens.Load(),
		ReportedPrompt:   s.reportedPrompt.Load(),
		ReportedTokens:   s.reportedCompletion.Load(),
		MaxInFlight:      s.maxInFlight.Load(),
	}
}

// ServeHTTP answers the OpenAI routes the gateway uses.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	if strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/messages") && r.Method == http.MethodPost {
		if cfg.APIKey != "" && r.Header.Get("X-Api-Key") != cfg.APIKey {
			writeAnthropicError(w, http.StatusUnauthorized, "authentication_error", "invalid x-api-key")
			return
		}
		s.messages(w, r, cfg)
		return
	}
	if cfg.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+cfg.APIKey {
		writeError(w, http.StatusUnauthorized, "Incorrect API key provided.", "invalid_request_error")
		return
	}
	switch path := strings.TrimSuffix(r.URL.Path, "/"); {
	case strings.HasSuffix(path, "/chat/completions") && r.Method == http.MethodPost:
		s.chat(w, r, cfg)
	case strings.HasSuffix(path, "/completions") && r.Method == http.MethodPost:
		s.completions(w, r, cfg)
	case strings.HasSuffix(path, "/embeddings") && r.Method == http.MethodPost:
		s.embeddings(w, r, cfg)
	case strings.HasSuffix(path, "/models") && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":"sim","object":"model","created":%d,"owned_by":"sim"}]}`, time.Now().Unix())
	default:
		writeError(w, http.StatusNotFound, "Not Found", "invalid_request_error")
	}
}

func writeError(w http.ResponseWriter, status int, msg, typ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": status,
	}})
}
