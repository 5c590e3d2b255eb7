package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// shape is what differs between a chat answer and a legacy completion:
// the object names and how a choice is written.
type shape interface {
	object(stream bool) string
	first(k int) string    // choice k's role-only chunk, "" for none
	piece(k, i int) string // choice k's i-th token
	last(k int) string     // choice k's finish
	whole(k int) string    // choice k of an answer not streamed
}

// chatEvents writes chat.completion choices: text, or a tool call.
type chatEvents struct{ g *generation }

func (chatEvents) object(stream bool) string {
	if stream {
		return "chat.completion.chunk"
	}
	return "chat.completion"
}

func (e chatEvents) first(k int) string {
	if e.g.tool != "" {
		return fmt.Sprintf(`{"index":%d,"delta":{"role":"assistant","content":null},"logprobs":null,"finish_reason":null}`, k)
	}
	return fmt.Sprintf(`{"index":%d,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}`, k)
}

func (e chatEvents) piece(k, i int) string {
	if e.g.tool == "" {
		tok, _ := json.Marshal(Token(i))
		return fmt.Sprintf(`{"index":%d,"delta":{"content":%s},"logprobs":null,"finish_reason":null}`, k, tok)
	}
	if i == 0 {
		return fmt.Sprintf(`{"index":%d,"delta":{"tool_calls":[{"index":0,"id":%q,"type":"function","function":{"name":%q,"arguments":""}}]},"logprobs":null,"finish_reason":null}`,
			k, e.callID(k), e.g.tool)
	}
	from := (i - 1) * toolPiece
	p, _ := json.Marshal(e.g.args[from:min(from+toolPiece, len(e.g.args))])
	return fmt.Sprintf(`{"index":%d,"delta":{"tool_calls":[{"index":0,"function":{"arguments":%s}}]},"logprobs":null,"finish_reason":null}`, k, p)
}

func (e chatEvents) last(k int) string {
	return fmt.Sprintf(`{"index":%d,"delta":{},"logprobs":null,"finish_reason":%q}`, k, e.g.finish)
}

func (e chatEvents) whole(k int) string {
	if e.g.tool == "" {
		text, _ := json.Marshal(Reply(e.g.n))
		return fmt.Sprintf(`{"index":%d,"message":{"role":"assistant","content":%s},"logprobs":null,"finish_reason":%q}`, k, text, e.g.finish)
	}
	args, _ := json.Marshal(e.g.args)
	return fmt.Sprintf(`{"index":%d,"message":{"role":"assistant","content":null,"tool_calls":[{"id":%q,"type":"function","function":{"name":%q,"arguments":%s}}]},"logprobs":null,"finish_reason":"tool_calls"}`,
		k, e.callID(k), e.g.tool, args)
}

func (e chatEvents) callID(k int) string {
	return fmt.Sprintf("call_%s_%d", strings.TrimPrefix(e.g.id, "chatcmpl-"), k)
}

// textEvents writes legacy text_completion choices.
type textEvents struct{ g *generation }

func (textEvents) object(bool) string { return "text_completion" }
func (textEvents) first(int) string   { return "" }

func (textEvents) piece(k, i int) string {
	tok, _ := json.Marshal(Token(i))
	return fmt.Sprintf(`{"text":%s,"index":%d,"logprobs":null,"finish_reason":null}`, tok, k)
}

func (e textEvents) last(k int) string {
	return fmt.Sprintf(`{"text":"","index":%d,"logprobs":null,"finish_reason":%q}`, k, e.g.finish)
}

func (e textEvents) whole(k int) string {
	text, _ := json.Marshal(Reply(e.g.n))
	return fmt.Sprintf(`{"text":%s,"index":%d,"logprobs":null,"finish_reason":%q}`, text, k, e.g.finish)
}

// leaving stops counting the generation in flight, if it is counted.
func (g *generation) leaving() {
	if g.leave != nil {
		g.leave()
	}
}

// complete sends the whole answer at once, after the time its tokens take.
func (g *generation) complete(w http.ResponseWriter, sh shape) {
	if !g.whole(func() {
		writeError(w, http.StatusInternalServerError, "simulated generation failure", "InternalServerError")
	}) {
		return
	}
	g.reported()
	choices := make([]string, g.choices)
	for k := range choices {
		choices[k] = sh.whole(k)
	}
	w.Header().Set("Content-Type", "application/json")
	g.leaving()
	fmt.Fprintf(w, `{"id":%q,"object":%q,"created":%d,"model":%q%s,"choices":[%s],"usage":%s}`+"\n",
		g.id, sh.object(false), g.created, g.model, g.extra(), strings.Join(choices, ","), g.usageJSON())
	g.done(true)
}

// whole waits the time a whole answer takes and strikes its fault (Hang
// waits for the client, Disconnect drops the connection, StreamError
// sends what writeErr writes); it reports whether to write the answer.
func (g *generation) whole(writeErr func()) bool {
	if g.cfg.Fault.Kind == Hang {
		<-g.ctx.Done()
		g.done(false)
		return false
	}
	if !g.wait(g.cfg.FirstTokenDelay + time.Duration(g.n)*g.gap()) {
		g.sent = g.n / 2 // what it generated before the client left, roughly
		g.done(false)
		return false
	}
	g.sent = g.n
	switch g.cfg.Fault.Kind {
	case Disconnect:
		g.done(false)
		panic(http.ErrAbortHandler)
	case StreamError:
		g.done(false)
		writeErr()
		return false
	}
	return true
}
