// Package sim is an OpenAI-compatible upstream simulator: it answers
// /v1/chat/completions and /v1/models the way vLLM and OpenAI do, quirks
// included (a role-only first chunk, usage only when stream_options asks for
// it, error events mid-stream), with configurable pacing and injected faults.
//
// It is importable so that tests can run it over a real socket with
// httptest; the loadtest command serves it as a standalone process.
package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
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
	Fault  Fault
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

	mu       sync.Mutex
	recorded []Request
	record   bool
}

// New returns a simulator answering as cfg says.
func New(cfg Config) *Server {
	s := &Server{}
	s.SetConfig(cfg)
	return s
}

// SetConfig changes how the following requests are answered.
func (s *Server) SetConfig(cfg Config) { s.cfg.Store(&cfg) }

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
	}
}

// ServeHTTP answers the OpenAI routes the gateway uses.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	cfg := s.cfg.Load()
	if cfg.APIKey != "" && r.Header.Get("Authorization") != "Bearer "+cfg.APIKey {
		writeError(w, http.StatusUnauthorized, "Incorrect API key provided.", "invalid_request_error")
		return
	}
	switch path := strings.TrimSuffix(r.URL.Path, "/"); {
	case strings.HasSuffix(path, "/chat/completions") && r.Method == http.MethodPost:
		s.chat(w, r, cfg)
	case strings.HasSuffix(path, "/models") && r.Method == http.MethodGet:
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"object":"list","data":[{"id":"sim","object":"model","created":%d,"owned_by":"sim"}]}`, time.Now().Unix())
	default:
		writeError(w, http.StatusNotFound, "Not Found", "invalid_request_error")
	}
}

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type chatRequest struct {
	Model               string    `json:"model"`
	Messages            []message `json:"messages"`
	MaxTokens           *int      `json:"max_tokens"`
	MaxCompletionTokens *int      `json:"max_completion_tokens"`
	Stream              bool      `json:"stream"`
	StreamOptions       *struct {
		IncludeUsage         bool `json:"include_usage"`
		ContinuousUsageStats bool `json:"continuous_usage_stats"`
	} `json:"stream_options"`
}

// Usage is an OpenAI usage object.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// words is the reply vocabulary: one word, one token.
var words = []string{"Hello", " from", " the", " simulator", ",", " a", " stand", "-in", " for", " a", " model", " server", "."}

// Token returns the i-th token of every reply, so tests can predict replies.
func Token(i int) string { return words[i%len(words)] }

// Reply returns the text of an n-token reply.
func Reply(n int) string {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(Token(i))
	}
	return b.String()
}

// promptTokens is the simulator's tokenizer: whitespace-separated words
// of every text content plus three tokens of template per message. It
// differs from the gateway's estimate on purpose, as a real tokenizer does.
func promptTokens(msgs []message) int {
	n := 0
	for _, m := range msgs {
		n += 3
		var s string
		if json.Unmarshal(m.Content, &s) == nil {
			n += len(strings.Fields(s))
			continue
		}
		var parts []struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(m.Content, &parts) == nil {
			for _, p := range parts {
				if p.Type == "text" {
					n += len(strings.Fields(p.Text))
				} else {
					n += 85
				}
			}
		}
	}
	return n
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request, cfg *Config) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return
	}
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON: "+err.Error(), "BadRequestError")
		return
	}
	if req.Model == "" || len(req.Messages) == 0 {
		writeError(w, http.StatusBadRequest, "model and messages are required", "BadRequestError")
		return
	}
	s.requests.Add(1)
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	s.mu.Lock()
	if s.record {
		s.recorded = append(s.recorded, Request{
			Model: req.Model, Stream: req.Stream, IncludeUsage: includeUsage,
			MaxTokens: maxTokens(req), Authorization: r.Header.Get("Authorization"),
			Header: r.Header.Clone(), Body: body,
		})
	}
	s.mu.Unlock()

	if cfg.Fault.Kind == Status {
		if cfg.Fault.Status == http.StatusTooManyRequests || cfg.Fault.Status == http.StatusServiceUnavailable {
			w.Header().Set("Retry-After", "1")
		}
		writeError(w, cfg.Fault.Status, "simulated failure", "InternalServerError")
		return
	}

	n := cfg.ReplyTokens
	if n == 0 {
		n = DefaultReplyTokens
	}
	finish := "stop"
	if mt := maxTokens(req); mt > 0 && mt < n {
		n, finish = mt, "length"
	}
	g := &generation{
		s: s, cfg: cfg, ctx: r.Context(), n: n, finish: finish,
		prompt: promptTokens(req.Messages),
		id:     "chatcmpl-sim-" + strconv.FormatInt(s.seq.Add(1), 10),
		model:  req.Model, created: time.Now().Unix(),
	}
	if req.Stream {
		g.stream(w, includeUsage && !cfg.NoUsage, req.StreamOptions != nil && req.StreamOptions.ContinuousUsageStats)
	} else {
		g.complete(w)
	}
}

func maxTokens(req chatRequest) int {
	switch {
	case req.MaxCompletionTokens != nil:
		return *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		return *req.MaxTokens
	}
	return 0
}

type generation struct {
	s       *Server
	cfg     *Config
	ctx     context.Context
	n       int
	finish  string
	prompt  int
	id      string
	model   string
	created int64
	sent    int // tokens generated so far
}

// wait sleeps for d or until the client is gone; it reports whether the
// client is still there.
func (g *generation) wait(d time.Duration) bool {
	if d <= 0 {
		return g.ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-g.ctx.Done():
		return false
	}
}

func (g *generation) gap() time.Duration {
	if g.cfg.TokensPerSecond <= 0 {
		return 0
	}
	return time.Duration(float64(time.Second) / g.cfg.TokensPerSecond)
}

// done counts the generation once it ends, however it ends.
func (g *generation) done(completed bool) {
	g.s.promptTokens.Add(int64(g.prompt))
	g.s.completionTokens.Add(int64(g.sent))
	if completed {
		g.s.completed.Add(1)
	} else {
		g.s.cancelled.Add(1)
	}
}

func (g *generation) usage() Usage {
	return Usage{PromptTokens: g.prompt, CompletionTokens: g.sent, TotalTokens: g.prompt + g.sent}
}

func (g *generation) complete(w http.ResponseWriter) {
	if g.cfg.Fault.Kind == Hang {
		<-g.ctx.Done()
		g.done(false)
		return
	}
	total := g.cfg.FirstTokenDelay + time.Duration(g.n)*g.gap()
	if !g.wait(total) {
		g.sent = g.n / 2 // what it generated before the client left, roughly
		g.done(false)
		return
	}
	g.sent = g.n
	switch g.cfg.Fault.Kind {
	case Disconnect:
		g.done(false)
		panic(http.ErrAbortHandler)
	case StreamError:
		g.done(false)
		writeError(w, http.StatusInternalServerError, "simulated generation failure", "InternalServerError")
		return
	}
	u := g.usage()
	g.s.reportedPrompt.Add(int64(u.PromptTokens))
	g.s.reportedCompletion.Add(int64(u.CompletionTokens))
	resp := map[string]any{
		"id": g.id, "object": "chat.completion", "created": g.created, "model": g.model,
		"choices": []any{map[string]any{
			"index": 0, "message": map[string]any{"role": "assistant", "content": Reply(g.n)},
			"logprobs": nil, "finish_reason": g.finish,
		}},
		"usage": u,
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
	g.done(true)
}

// stream sends the reply as chunks. continuous (vLLM's
// continuous_usage_stats, with include_usage) puts the usage so far in
// every chunk, the chunk's own token included.
func (g *generation) stream(w http.ResponseWriter, includeUsage, continuous bool) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	start := func() {
		w.WriteHeader(http.StatusOK)
		rc.Flush()
	}
	if !g.cfg.DelayHeaders {
		start()
	}
	if !g.wait(g.cfg.FirstTokenDelay) {
		g.done(false)
		return
	}
	if g.cfg.DelayHeaders {
		start()
	}
	usageField := func(completion int) string {
		switch {
		case includeUsage && continuous:
			return fmt.Sprintf(`,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, g.prompt, completion, g.prompt+completion)
		case includeUsage:
			return `,"usage":null`
		}
		return ""
	}
	send := func(choice string, completion int) bool {
		_, err := fmt.Fprintf(w, "data: {\"id\":%q,\"object\":\"chat.completion.chunk\",\"created\":%d,\"model\":%q,\"choices\":[%s]%s}\n\n",
			g.id, g.created, g.model, choice, usageField(completion))
		return err == nil && rc.Flush() == nil
	}
	if !send(`{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`, 0) {
		g.done(false)
		return
	}
	gap := g.gap()
	for i := 0; i < g.n; i++ {
		if i == g.cfg.Fault.After {
			switch g.cfg.Fault.Kind {
			case StreamError:
				fmt.Fprint(w, "data: {\"error\": {\"object\": \"error\", \"message\": \"simulated generation failure\", \"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n")
				fmt.Fprint(w, "data: [DONE]\n\n")
				rc.Flush()
				g.done(false)
				return
			case Disconnect:
				g.done(false)
				panic(http.ErrAbortHandler)
			case Hang:
				<-g.ctx.Done()
				g.done(false)
				return
			}
		}
		if i > 0 && !g.wait(gap) {
			g.done(false)
			return
		}
		tok, _ := json.Marshal(Token(i))
		if !send(`{"index":0,"delta":{"content":`+string(tok)+`},"logprobs":null,"finish_reason":null}`, g.sent+1) {
			g.done(false)
			return
		}
		g.sent++
	}
	if !send(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"`+g.finish+`"}`, g.sent) {
		g.done(false)
		return
	}
	if includeUsage {
		u := g.usage()
		fmt.Fprintf(w, "data: {\"id\":%q,\"object\":\"chat.completion.chunk\",\"created\":%d,\"model\":%q,\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
			g.id, g.created, g.model, u.PromptTokens, u.CompletionTokens, u.TotalTokens)
		g.s.reportedPrompt.Add(int64(u.PromptTokens))
		g.s.reportedCompletion.Add(int64(u.CompletionTokens))
	}
	fmt.Fprint(w, "data: [DONE]\n\n")
	rc.Flush()
	g.done(true)
}

func writeError(w http.ResponseWriter, status int, msg, typ string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"message": msg, "type": typ, "param": nil, "code": status,
	}})
}
