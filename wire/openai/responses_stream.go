package openai

import (
	"encoding/json"
	"fmt"
)

// streamDelta is what the Responses events need of a chat chunk's first
// choice.
type streamDelta struct {
	Index int `json:"index"`
	Delta struct {
		Content   string     `json:"content"`
		ToolCalls []toolCall `json:"tool_calls"`
	} `json:"delta"`
	FinishReason *string `json:"finish_reason"`
}

// event turns one chat chunk into Responses events.
func (rs *responseStream) event(data []byte) error {
	raw, err := rs.Read(data, rs.turn)
	if err != nil || raw == nil {
		return err
	}
	var choices []streamDelta
	if err := json.Unmarshal(raw, &choices); err != nil {
		return fmt.Errorf("%w: choices: %w", ErrBrokenStream, err)
	}
	for _, d := range choices {
		if d.Index != 0 {
			continue // the Responses API has one choice
		}
		if d.FinishReason != nil && *d.FinishReason != "" {
			rs.finish = *d.FinishReason
			rs.turn.Finish = append(rs.turn.Finish, rs.finish)
		}
		if d.Delta.Content != "" {
			if err := rs.textDelta(d.Delta.Content); err != nil {
				return err
			}
		}
		for _, tc := range d.Delta.ToolCalls {
			if err := rs.toolDelta(tc.Index, tc.ID, tc.Function.Name, tc.Function.Arguments); err != nil {
				return err
			}
		}
	}
	return nil
}

func (rs *responseStream) msgID() string { return "msg_" + idSuffix(rs.turn.ID) }

// outputs is how many output items have begun.
func (rs *responseStream) outputs() int {
	n := len(rs.calls)
	if rs.msgOpen || rs.text.Len() > 0 {
		n++
	}
	return n
}

// textDelta relays text, opening the message item on the first.
func (rs *responseStream) textDelta(s string) error {
	if !rs.msgOpen {
		rs.msgOpen, rs.msgIndex = true, rs.outputs()
		if err := rs.emit("response.output_item.added", map[string]any{"output_index": rs.msgIndex,
			"item": map[string]any{"type": "message", "id": rs.msgID(), "status": "in_progress", "role": "assistant", "content": []any{}}}); err != nil {
			return err
		}
		if err := rs.emit("response.content_part.added", map[string]any{"item_id": rs.msgID(), "output_index": rs.msgIndex,
			"content_index": 0, "part": outputTextPart("")}); err != nil {
			return err
		}
	}
	rs.text.WriteString(s)
	return rs.emit("response.output_text.delta", map[string]any{"item_id": rs.msgID(), "output_index": rs.msgIndex,
		"content_index": 0, "delta": s, "logprobs": []any{}})
}

// toolDelta relays a piece of a tool call, opening its function_call
// item when the call begins.
func (rs *responseStream) toolDelta(index int, id, name, args string) error {
	sc := rs.byIndex[index]
	if sc == nil {
		sc = &streamCall{id: fmt.Sprintf("fc_%s_%d", idSuffix(rs.turn.ID), len(rs.calls)), callID: id, name: name, index: rs.outputs()}
		rs.calls = append(rs.calls, sc)
		rs.byIndex[index] = sc
		if err := rs.emit("response.output_item.added", map[string]any{"output_index": sc.index,
			"item": functionCallItem(sc.id, "in_progress", sc.callID, sc.name, "")}); err != nil {
			return err
		}
	}
	if args == "" {
		return nil
	}
	sc.args.WriteString(args)
	return rs.emit("response.function_call_arguments.delta", map[string]any{"item_id": sc.id, "output_index": sc.index, "delta": args})
}

// complete closes every item and sends response.completed (or
// response.incomplete) with the whole response and its usage.
func (rs *responseStream) complete() error {
	o := rs.rr.object(rs.turn.ID, rs.model, "completed", rs.created)
	output := make([]map[string]any, rs.outputs())
	if rs.msgOpen {
		text := rs.text.String()
		item := messageItem(rs.msgID(), "completed", text)
		for _, ev := range []struct {
			typ    string
			fields map[string]any
		}{
			{"response.output_text.done", map[string]any{"item_id": rs.msgID(), "output_index": rs.msgIndex, "content_index": 0, "text": text, "logprobs": []any{}}},
			{"response.content_part.done", map[string]any{"item_id": rs.msgID(), "output_index": rs.msgIndex, "content_index": 0, "part": outputTextPart(text)}},
			{"response.output_item.done", map[string]any{"output_index": rs.msgIndex, "item": item}},
		} {
			if err := rs.emit(ev.typ, ev.fields); err != nil {
				return err
			}
		}
		output[rs.msgIndex] = item
	}
	for _, sc := range rs.calls {
		item := functionCallItem(sc.id, "completed", sc.callID, sc.name, sc.args.String())
		if err := rs.emit("response.function_call_arguments.done", map[string]any{"item_id": sc.id, "output_index": sc.index, "arguments": sc.args.String()}); err != nil {
			return err
		}
		if err := rs.emit("response.output_item.done", map[string]any{"output_index": sc.index, "item": item}); err != nil {
			return err
		}
		output[sc.index] = item
	}
	o.Output = output
	finishStatus(rs.finish, o)
	u := rs.Usage
	if u == nil {
		u = OwnCount(rs.prompt, rs.Counted)
	}
	o.Usage = responsesUsage(u)
	typ := "response.completed"
	if o.Status == "incomplete" {
		typ = "response.incomplete"
	}
	if err := rs.emit(typ, map[string]any{"response": o}); err != nil {
		return err
	}
	if rs.out.Flush() != nil {
		return ErrClientGone
	}
	return nil
}
