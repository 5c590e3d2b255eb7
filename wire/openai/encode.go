package openai

import (
	"errors"
	"strconv"

	"github.com/obol/obol/internal/chunk"
	"github.com/obol/obol/internal/jsonenc"
)

// The hand-written encoders of answers and chunks: what json.Marshal
// writes, without its reflection, the backend's parts passed through.

// appendCompat encodes a chunk as json.Marshal would, without reflection
// or re-validating the backend's choices, which pass through as they came
// (already checked when the event was decoded).
func (rl *relay) appendCompat(ev *compatChunk) []byte {
	b := appendExtra(rl.head(ev.ID, ev.Object, ev.Created, ev.Model), ev.SystemFingerprint, ev.ServiceTier)
	b = append(append(b, `,"choices":`...), ev.Choices...)
	if len(ev.Usage) > 0 {
		b = append(append(b, `,"usage":`...), ev.Usage...)
	}
	rl.out = append(b, '}')
	return rl.out
}

// appendNative encodes a native chunk, as appendCompat does.
func (rl *relay) appendNative(ev *nativeChunk) []byte {
	b := appendExtra(rl.head(ev.ID, ev.Object, ev.Created, ev.Model), ev.SystemFingerprint, ev.ServiceTier)
	b = append(append(b, `,"choices":`...), ev.Choices...)
	b = jsonenc.AppendString(append(b, `,"delta":`...), ev.Delta)
	if ev.Usage != nil {
		b = AppendUsage(append(b, `,"usage":`...), ev.Usage)
	}
	rl.out = append(b, '}')
	return rl.out
}

// appendExtra appends the backend's system_fingerprint and service_tier,
// where it sent them.
func appendExtra(b, fingerprint, tier []byte) []byte {
	if len(fingerprint) > 0 {
		b = append(append(b, `,"system_fingerprint":`...), fingerprint...)
	}
	if len(tier) > 0 {
		b = append(append(b, `,"service_tier":`...), tier...)
	}
	return b
}

// head starts a chunk: id, object, created and model. The id, object and
// model are the gateway's own and need no escaping.
func (rl *relay) head(id, object string, created int64, model string) []byte {
	b := append(rl.out[:0], `{"id":"`...)
	b = append(b, id...)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = append(b, `,"model":"`...)
	b = append(b, model...)
	return append(b, '"')
}

// AppendNativeResponse encodes the native answer as json.Marshal
// would, with the backend's choices passed through as they came.
func AppendNativeResponse(b []byte, id string, created int64, model string, comp *chunk.Chunk, u *Usage) []byte {
	b = append(b, `{"id":`...)
	b = jsonenc.AppendString(b, id)
	b = append(b, `,"object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, created, 10)
	b = jsonenc.AppendString(append(b, `,"model":`...), model)
	b = appendExtra(b, comp.SystemFingerprint, comp.ServiceTier)
	b = append(append(b, `,"choices":`...), comp.Choices...)
	b = AppendUsage(append(b, `,"usage":`...), u)
	return append(b, '}')
}

// AppendUsage encodes u as json.Marshal would, its details as the
// backend sent them.
func AppendUsage(b []byte, u *Usage) []byte {
	b = strconv.AppendInt(append(b, `{"prompt_tokens":`...), int64(u.PromptTokens), 10)
	b = strconv.AppendInt(append(b, `,"completion_tokens":`...), int64(u.CompletionTokens), 10)
	b = strconv.AppendInt(append(b, `,"total_tokens":`...), int64(u.TotalTokens), 10)
	if len(u.PromptTokensDetails) > 0 {
		b = append(append(b, `,"prompt_tokens_details":`...), u.PromptTokensDetails...)
	}
	if len(u.CompletionTokensDetails) > 0 {
		b = append(append(b, `,"completion_tokens_details":`...), u.CompletionTokensDetails...)
	}
	if u.Cost != nil {
		b = append(append(b, `,"cost":`...), u.Cost.USD()...)
	}
	return append(b, '}')
}

// CompatResponse is the backend's answer with the gateway's id and object
// (kept as the backend's when ""), the public model name, and the
// gateway's usage where the backend sent none (addUsage); every other
// field passes through, in its order.
func CompatResponse(raw []byte, id, object, model string, addUsage bool, u *Usage) ([]byte, error) {
	b := make([]byte, 0, len(raw)+128)
	b = append(b, '{')
	if id != "" {
		b = jsonenc.AppendString(append(b, `"id":`...), id)
		b = jsonenc.AppendString(append(b, `,"object":`...), object)
		b = append(b, ',')
	}
	b = jsonenc.AppendString(append(b, `"model":`...), model)
	ok := chunk.Fields(raw, func(name, value []byte) bool {
		switch string(name) {
		case "model":
			return true
		case "id", "object":
			if id != "" {
				return true
			}
		case "usage":
			if addUsage {
				return true // null: the gateway's count replaces it
			}
		}
		b = append(append(append(b, ',', '"'), name...), '"', ':')
		b = append(b, value...)
		return true
	})
	if !ok {
		return nil, errors.New("not one JSON object with plain field names")
	}
	if addUsage {
		b = AppendUsage(append(b, `,"usage":`...), u)
	}
	return append(b, '}'), nil
}
