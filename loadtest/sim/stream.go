package sim

import (
	"fmt"
	"net/http"
)

// stream sends the answer as chunks: each choice's role (chat), then its
// tokens with the choices interleaved, each choice's finish, the usage
// chunk when asked, and [DONE]. continuous (vLLM's continuous_usage_stats,
// with include_usage) puts the usage so far in every chunk, the chunk's
// own tokens included.
func (g *generation) stream(w http.ResponseWriter, sh shape, includeUsage, continuous bool) {
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
	usageField := func(tokens int) string {
		switch {
		case includeUsage && continuous:
			c := tokens * g.choices
			return fmt.Sprintf(`,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`, g.prompt, c, g.prompt+c)
		case includeUsage:
			return `,"usage":null`
		}
		return ""
	}
	send := func(choice string, tokens int) bool {
		_, err := fmt.Fprintf(w, "data: {\"id\":%q,\"object\":%q,\"created\":%d,\"model\":%q%s,\"choices\":[%s]%s}\n\n",
			g.id, sh.object(true), g.created, g.model, g.extra(), choice, usageField(tokens))
		return err == nil && rc.Flush() == nil
	}
	for k := 0; k < g.choices; k++ {
		if first := sh.first(k); first != "" && !send(first, 0) {
			g.done(false)
			return
		}
	}
	if !g.tokens(w, rc, sh, send) {
		return
	}
	for k := 0; k < g.choices; k++ {
		if !send(sh.last(k), g.sent) {
			g.done(false)
			return
		}
	}
	if includeUsage {
		fmt.Fprintf(w, "data: {\"id\":%q,\"object\":%q,\"created\":%d,\"model\":%q%s,\"choices\":[],\"usage\":%s}\n\n",
			g.id, sh.object(true), g.created, g.model, g.extra(), g.usageJSON())
		g.reported()
	}
	g.leaving()
	fmt.Fprint(w, "data: [DONE]\n\n")
	rc.Flush()
	g.done(true)
}

// tokens sends every choice's tokens, interleaved, striking the
// configured fault after Fault.After of them; it reports whether the
// stream goes on (if not, it has been counted).
func (g *generation) tokens(w http.ResponseWriter, rc *http.ResponseController, sh shape, send func(string, int) bool) bool {
	gap := g.gap()
	for i := 0; i < g.n; i++ {
		if i == g.cfg.Fault.After && g.strike(func() {
			fmt.Fprint(w, "data: {\"error\": {\"object\": \"error\", \"message\": \"simulated generation failure\", \"type\": \"InternalServerError\", \"param\": null, \"code\": 500}}\n\n")
			fmt.Fprint(w, "data: [DONE]\n\n")
			rc.Flush()
		}) {
			return false
		}
		if i > 0 && !g.wait(gap) {
			g.done(false)
			return false
		}
		for k := 0; k < g.choices; k++ {
			if !send(sh.piece(k, i), g.sent+1) {
				g.done(false)
				return false
			}
		}
		g.sent++
	}
	return true
}

// strike strikes a mid-stream fault: StreamError sends what sendError
// writes, Disconnect drops the connection, Hang waits for the client to
// go. It reports whether the stream ends here (it has been counted).
func (g *generation) strike(sendError func()) bool {
	switch g.cfg.Fault.Kind {
	case StreamError:
		sendError()
	case Disconnect:
		g.done(false)
		panic(http.ErrAbortHandler)
	case Hang:
		<-g.ctx.Done()
	default:
		return false
	}
	g.done(false)
	return true
}
