package sim

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// messageStream sends the answer as Anthropic's events: message_start
// (the whole prompt's usage, one output token), the content block
// started, a ping, its deltas (a text token each, or the tool input in
// pieces), the block stopped, message_delta (the stop reason and the
// output tokens), message_stop. A StreamError fault is an error event
// (overloaded_error), as Anthropic sends it mid-stream.
func (g *generation) messageStream(w http.ResponseWriter) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	send := func(typ, data string) bool {
		_, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", typ, data)
		return err == nil && rc.Flush() == nil
	}
	if !g.wait(g.cfg.FirstTokenDelay) {
		g.done(false)
		return
	}
	start := fmt.Sprintf(`{"type":"message_start","message":{"id":"%s","type":"message","role":"assistant","model":%q,"content":[],"stop_reason":null,"stop_sequence":null,"usage":%s}}`,
		g.id, g.model, g.anthropicUsage(1))
	blockStart := `{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}`
	if g.tool != "" {
		blockStart = fmt.Sprintf(`{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_%s","name":%q,"input":{}}}`, g.id, g.tool)
	}
	if !send("message_start", start) || !send("content_block_start", blockStart) || !send("ping", `{"type": "ping"}`) {
		g.done(false)
		return
	}
	if !g.deltas(w, send) {
		return
	}
	g.leaving()
	end := fmt.Sprintf(`{"type":"message_delta","delta":{"stop_reason":%q,"stop_sequence":null},"usage":{"output_tokens":%d}}`, g.stopReason(), g.sent)
	send("content_block_stop", `{"type":"content_block_stop","index":0}`)
	send("message_delta", end)
	g.reported()
	send("message_stop", `{"type":"message_stop"}`)
	g.done(true)
}

// deltas sends the block's pieces, striking the configured fault after
// Fault.After of them; it reports whether the stream goes on.
func (g *generation) deltas(w http.ResponseWriter, send func(typ, data string) bool) bool {
	gap := g.gap()
	for i := 0; i < g.n; i++ {
		if i == g.cfg.Fault.After && g.strike(func() {
			send("error", `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`)
		}) {
			return false
		}
		if i > 0 && !g.wait(gap) {
			g.done(false)
			return false
		}
		if !send("content_block_delta", g.delta(i)) {
			g.done(false)
			return false
		}
		g.sent++
	}
	return true
}

// delta is the i-th piece of the block: a text token, or a piece of the
// tool input (the name counts as the first token, as in chat).
func (g *generation) delta(i int) string {
	if g.tool == "" {
		t, _ := json.Marshal(Token(i))
		return `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":` + string(t) + `}}`
	}
	piece := ""
	if i > 0 {
		lo := (i - 1) * toolPiece
		piece = g.args[lo:min(lo+toolPiece, len(g.args))]
	}
	p, _ := json.Marshal(piece)
	return `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":` + string(p) + `}}`
}
