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
	"time"
)

type message struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type chatRequest struct {
	Model               string            `json:"model"`
	Messages            []message         `json:"messages"`
	MaxTokens           *int              `json:"max_tokens"`
	MaxCompletionTokens *int              `json:"max_completion_tokens"`
	N                   int               `json:"n"`
	Tools               []json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage   `json:"tool_choice"`
	Stream              bool              `json:"stream"`
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

// ToolArguments are the arguments of every tool call the simulator makes,
// streamed in pieces of toolPiece bytes, each piece one token.
const ToolArguments = `{"location":"Paris","unit":"celsius"}`

const toolPiece = 8

// ToolCallTokens is what one tool call with ToolArguments costs: its name
// and each piece of its arguments.
func ToolCallTokens() int { return toolTokens(ToolArguments) }

func toolTokens(args string) int { return 1 + (len(args)+toolPiece-1)/toolPiece }

// promptTokens is the simulator's tokenizer: whitespace-separated words
// of every text content plus three tokens of template per message. It
// differs from the gateway's estimate on purpose, as a real tokenizer does.
func promptTokens(msgs []message) int {
	n := 0
	for _, m := range msgs {
		n += 3 + contentTokens(m.Content)
	}
	return n
}

func contentTokens(raw json.RawMessage) int {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return len(strings.Fields(s))
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	n := 0
	if json.Unmarshal(raw, &parts) == nil {
		for _, p := range parts {
			if p.Type == "text" {
				n += len(strings.Fields(p.Text))
			} else {
				n += 85
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
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	if !s.begin(w, r, cfg, Request{Model: req.Model, Stream: req.Stream, IncludeUsage: includeUsage,
		MaxTokens: maxTokens(req.MaxTokens, req.MaxCompletionTokens), Body: body}) {
		return
	}
	leave := s.enter(r.Context())
	defer leave()
	prompt := promptTokens(req.Messages)
	if cfg.WorstCase {
		prompt = WorstPrompt(body)
	}
	g := s.newGeneration(r.Context(), cfg, "chatcmpl", req.Model, prompt, req.N, maxTokens(req.MaxTokens, req.MaxCompletionTokens))
	g.leave = leave
	if g.tool, g.args = toolCall(&req); g.tool != "" {
		g.n, g.finish = toolTokens(g.args), "tool_calls"
	}
	if req.Stream {
		g.stream(w, chatEvents{g}, includeUsage && !cfg.NoUsage, req.StreamOptions != nil && req.StreamOptions.ContinuousUsageStats)
	} else {
		g.complete(w, chatEvents{g})
	}
}

// enter counts a generation running until the returned func is called
// or its client goes (a generation notices that only at its next token;
// the client, a gateway, counts it gone when it hangs up). The func may
// be called more than once.
func (s *Server) enter(ctx context.Context) func() {
	n := s.inFlight.Add(1)
	for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
	}
	var once sync.Once
	leave := func() { once.Do(func() { s.inFlight.Add(-1) }) }
	stop := context.AfterFunc(ctx, leave)
	return func() { stop(); leave() }
}

// begin counts and records a request and answers a Status fault; it
// reports whether to go on.
func (s *Server) begin(w http.ResponseWriter, r *http.Request, cfg *Config, rec Request) bool {
	s.requests.Add(1)
	s.mu.Lock()
	if s.record {
		rec.Authorization, rec.Header = r.Header.Get("Authorization"), r.Header.Clone()
		s.recorded = append(s.recorded, rec)
	}
	s.mu.Unlock()
	if cfg.Fault.Kind == Status && (cfg.Fault.Times == 0 || s.struck.Add(1) <= int64(cfg.Fault.Times)) {
		if cfg.Fault.Status == http.StatusTooManyRequests || cfg.Fault.Status == http.StatusServiceUnavailable || cfg.Fault.Status == 529 {
			w.Header().Set("Retry-After", "1")
		}
		if strings.HasSuffix(strings.TrimSuffix(r.URL.Path, "/"), "/messages") {
			typ, ok := anthropicErrorTypes[cfg.Fault.Status]
			if !ok {
				typ = "api_error"
			}
			writeAnthropicError(w, cfg.Fault.Status, typ, "simulated failure")
			return false
		}
		writeError(w, cfg.Fault.Status, "simulated failure", "InternalServerError")
		return false
	}
	return true
}

func maxTokens(maxTok, maxCompletion *int) int {
	switch {
	case maxCompletion != nil:
		return *maxCompletion
	case maxTok != nil:
		return *maxTok
	}
	return 0
}

// newGeneration is one answer of choices choices (n, at least 1) of up to
// ReplyTokens tokens each, capped by max.
func (s *Server) newGeneration(ctx context.Context, cfg *Config, idPrefix, model string, prompt, choices, max int) *generation {
	n := cfg.ReplyTokens
	if n == 0 {
		n = DefaultReplyTokens
	}
	finish := "stop"
	if max > 0 && max < n {
		n, finish = max, "length"
	}
	return &generation{
		s: s, cfg: cfg, ctx: ctx, n: n, finish: finish, prompt: prompt, choices: max1(choices),
		id:    idPrefix + "-sim-" + strconv.FormatInt(s.seq.Add(1), 10),
		model: model, created: time.Now().Unix(),
	}
}

func max1(n int) int {
	if n < 1 {
		return 1
	}
	return n
}

type generation struct {
	s       *Server
	cfg     *Config
	ctx     context.Context
	n       int // tokens of each choice
	choices int
	tool    string // the function each choice calls, or "" for text
	args    string // its arguments
	finish  string
	prompt  int
	id      string
	model   string
	created int64
	sent    int // tokens of choice 0 generated so far
	// leave, when set, stops counting the generation in flight: called
	// before its last byte is written, so that a client that has read it
	// whole never sees it still counted.
	leave func()
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
	g.s.completionTokens.Add(int64(g.sent * g.choices))
	if completed {
		g.s.completed.Add(1)
	} else {
		g.s.cancelled.Add(1)
	}
}

func (g *generation) usage() Usage {
	c := g.sent * g.choices
	return Usage{PromptTokens: g.prompt, CompletionTokens: c, TotalTokens: g.prompt + c}
}

// usageJSON is the usage so far, with the details OpenAI adds where the
// configuration asks for them.
func (g *generation) usageJSON() string {
	u := g.usage()
	out := fmt.Sprintf(`{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d`, u.PromptTokens, u.CompletionTokens, u.TotalTokens)
	if g.cfg.CachedTokens > 0 {
		out += fmt.Sprintf(`,"prompt_tokens_details":{"cached_tokens":%d}`, min(g.cfg.CachedTokens, u.PromptTokens))
	}
	if g.cfg.ReasoningTokens > 0 {
		out += fmt.Sprintf(`,"completion_tokens_details":{"reasoning_tokens":%d}`, min(g.cfg.ReasoningTokens, u.CompletionTokens))
	}
	return out + "}"
}

// reported counts a usage object sent to the client.
func (g *generation) reported() {
	u := g.usage()
	g.s.reportedPrompt.Add(int64(u.PromptTokens))
	g.s.reportedCompletion.Add(int64(u.CompletionTokens))
}

// extra is the top-level fields every answer and chunk carries after
// "model": system_fingerprint and service_tier when configured.
func (g *generation) extra() string {
	out := ""
	if g.cfg.Fingerprint != "" {
		out += fmt.Sprintf(`,"system_fingerprint":%q`, g.cfg.Fingerprint)
	}
	if g.cfg.ServiceTier != "" {
		out += fmt.Sprintf(`,"service_tier":%q`, g.cfg.ServiceTier)
	}
	return out
}
