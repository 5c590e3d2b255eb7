package openai

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/chunk"
)

// respUsage is the Responses API's usage object.
type respUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
		// Cache writes (an Anthropic backend's), as in prompt_tokens_details.
		CacheWriteTokens   int `json:"cache_write_tokens,omitempty"`
		CacheWrite1hTokens int `json:"cache_write_1h_tokens,omitempty"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

func responsesUsage(u *Usage) *respUsage {
	ru := &respUsage{InputTokens: u.PromptTokens, OutputTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}
	d := u.Details()
	ru.InputTokensDetails.CachedTokens, ru.OutputTokensDetails.ReasoningTokens = int(d.Cached), int(d.Reasoning)
	ru.InputTokensDetails.CacheWriteTokens = int(d.CacheWrite5m + d.CacheWrite1h)
	ru.InputTokensDetails.CacheWrite1hTokens = int(d.CacheWrite1h)
	return ru
}

// responseObject is the Responses API's response, with the request's
// settings echoed as OpenAI echoes them.
type responseObject struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"`
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Error              *respError         `json:"error"`
	IncompleteDetails  *incompleteDetails `json:"incomplete_details"`
	Instructions       json.RawMessage    `json:"instructions"`
	MaxOutputTokens    json.RawMessage    `json:"max_output_tokens"`
	Model              string             `json:"model"`
	Output             []map[string]any   `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	Store              bool               `json:"store"`
	Temperature        json.RawMessage    `json:"temperature"`
	Text               map[string]any     `json:"text"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              []json.RawMessage  `json:"tools"`
	TopP               json.RawMessage    `json:"top_p"`
	Usage              *respUsage         `json:"usage"`
	Metadata           json.RawMessage    `json:"metadata"`
}

type respError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

type incompleteDetails struct {
	Reason string `json:"reason"`
}

// object is the response's shell in a status, its output still empty.
func (rr *ResponsesRequest) object(id, model, status string, created int64) *responseObject {
	o := &responseObject{ID: id, Object: "response", CreatedAt: created, Status: status, Model: model,
		Instructions: rr.Instructions, MaxOutputTokens: rr.MaxOutputTokens, Output: []map[string]any{},
		ParallelToolCalls: true, Temperature: rr.Temperature, ToolChoice: rr.ToolChoice, Tools: rr.Tools,
		TopP: rr.TopP, Metadata: rr.Metadata, Text: map[string]any{"format": map[string]string{"type": "text"}}}
	if rr.Tools == nil {
		o.Tools = []json.RawMessage{}
	}
	if len(o.ToolChoice) == 0 {
		o.ToolChoice = json.RawMessage(`"auto"`)
	}
	if rr.Text != nil && len(rr.Text.Format) > 0 {
		o.Text = map[string]any{"format": rr.Text.Format}
	}
	if len(rr.ParallelToolCalls) > 0 {
		json.Unmarshal(rr.ParallelToolCalls, &o.ParallelToolCalls)
	}
	if len(o.Metadata) == 0 {
		o.Metadata = json.RawMessage("{}")
	}
	return o
}

// finishStatus is the status a finish_reason gives a response.
func finishStatus(finish string, o *responseObject) {
	o.Status = "completed"
	switch finish {
	case "length":
		o.Status, o.IncompleteDetails = "incomplete", &incompleteDetails{Reason: "max_output_tokens"}
	case "content_filter":
		o.Status, o.IncompleteDetails = "incomplete", &incompleteDetails{Reason: "content_filter"}
	}
}

func messageItem(id, status, text string) map[string]any {
	return map[string]any{"type": "message", "id": id, "status": status, "role": "assistant",
		"content": []any{outputTextPart(text)}}
}

func outputTextPart(text string) map[string]any {
	return map[string]any{"type": "output_text", "text": text, "annotations": []any{}, "logprobs": []any{}}
}

func functionCallItem(id, status, callID, name, args string) map[string]any {
	return map[string]any{"type": "function_call", "id": id, "status": status, "call_id": callID, "name": name, "arguments": args}
}

// suffix is the part of the request id after its prefix, to name the
// response's items.
func idSuffix(id string) string {
	_, s, _ := strings.Cut(id, "_")
	return s
}

// Answer is the response object of a complete chat answer: its text as
// a message item, its tool calls as function_call items, u its usage.
func (rr *ResponsesRequest) Answer(turn *Turn, model string, comp *chunk.Chunk, u *Usage) (*responseObject, error) {
	var choices []struct {
		Message struct {
			Content   string     `json:"content"`
			Refusal   string     `json:"refusal"`
			ToolCalls []toolCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	}
	if err := json.Unmarshal(comp.Choices, &choices); err != nil || len(choices) == 0 {
		return nil, errors.New("no choice in the answer")
	}
	ch := choices[0]
	o := rr.object(turn.ID, model, "completed", comp.Created)
	if ch.Message.Content != "" || len(ch.Message.ToolCalls) == 0 {
		o.Output = append(o.Output, messageItem("msg_"+idSuffix(turn.ID), "completed", ch.Message.Content))
	}
	for i, tc := range ch.Message.ToolCalls {
		o.Output = append(o.Output, functionCallItem(fmt.Sprintf("fc_%s_%d", idSuffix(turn.ID), i), "completed", tc.ID, tc.Function.Name, tc.Function.Arguments))
	}
	finishStatus(ch.FinishReason, o)
	o.Usage = responsesUsage(u)
	return o, nil
}

// responseStream turns a chat stream into the Responses API's events.
type responseStream struct {
	out     Sink
	turn    *Turn
	rr      *ResponsesRequest
	model   string
	created int64
	seq     int

	text     strings.Builder
	msgOpen  bool
	msgIndex int
	calls    []*streamCall // in the order they began
	byIndex  map[int]*streamCall
	finish   string
	Tally
	prompt int
}

type streamCall struct {
	id, callID, name string
	args             strings.Builder
	index            int // output_index
}

// NewResponseStream turns a chat stream into the Responses API's events,
// for rr; prompt is the prompt estimate, its usage where the backend
// reports none.
func NewResponseStream(out Sink, turn *Turn, rr *ResponsesRequest, model string, prompt int) Streamer {
	return &responseStream{out: out, turn: turn, rr: rr, model: model, created: time.Now().Unix(), byIndex: map[int]*streamCall{}, prompt: prompt}
}

// emit writes one named event, its sequence number added.
func (rs *responseStream) emit(typ string, fields map[string]any) error {
	fields["type"] = typ
	fields["sequence_number"] = rs.seq
	rs.seq++
	b, _ := json.Marshal(fields)
	if rs.out.WriteNamed(typ, b) != nil {
		return ErrClientGone
	}
	return nil
}

// Fail ends a started stream with response.failed.
func (rs *responseStream) Fail(e *apierr.Error) {
	o := rs.rr.object(rs.turn.ID, rs.model, "failed", rs.created)
	o.Error = &respError{Code: string(e.Code), Message: e.Message}
	if rs.emit("response.failed", map[string]any{"response": o}) == nil {
		rs.out.Flush()
	}
}

// Run relays the chat stream as Responses events.
func (rs *responseStream) Run(events Events) error {
	shell := rs.rr.object(rs.turn.ID, rs.model, "in_progress", rs.created)
	if err := rs.emit("response.created", map[string]any{"response": shell}); err != nil {
		return err
	}
	if err := rs.emit("response.in_progress", map[string]any{"response": shell}); err != nil {
		return err
	}
	finished := false
	for {
		data, done, err := NextEvent(events, rs.out, rs.turn, finished)
		if err != nil {
			return err
		}
		if done {
			break
		}
		if err := rs.event(data); err != nil {
			return err
		}
		finished = finished || rs.finish != ""
	}
	return rs.complete()
}
