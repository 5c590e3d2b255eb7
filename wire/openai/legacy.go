package openai

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/jsonobj"
)

// legacyDefaultMaxTokens is OpenAI's (and vLLM's) max_tokens for a legacy
// completion that sets none; the gateway sends it, so that the backend is
// held to what was reserved.
const legacyDefaultMaxTokens = 16

// DecodeCompletion parses and checks a legacy completion body: a prompt
// (a string, strings, or token ids), the sampling fields chat has, and
// best_of, which the backend generates and so is charged.
func DecodeCompletion(body []byte) (*Request, error) {
	q, err := newRequest(body, completionShape)
	if err != nil {
		return nil, err
	}
	prompts, err := q.textOrTokens("prompt")
	if err != nil {
		return nil, err
	}
	q.template = templatePerInput * prompts
	if err := q.decodeSampling(); err != nil {
		return nil, err
	}
	bestOf, err := q.positiveInt("best_of")
	if err != nil {
		return nil, err
	}
	if q.MaxTokens == 0 {
		q.MaxTokens = legacyDefaultMaxTokens
		q.fields["max_tokens"] = json.RawMessage(strconv.Itoa(legacyDefaultMaxTokens))
	}
	q.N = max(q.N, bestOf) * prompts // one choice per prompt and n
	return q, nil
}

// textOrTokens reads a field that is a string, an array of strings, token
// ids or arrays of them (a prompt, an embedding's input), measures it
// into q.text, and says how many items it holds.
func (q *Request) textOrTokens(name string) (items int, err error) {
	raw, ok := q.fields[name]
	if !ok || jsonobj.IsNull(raw) {
		return 0, apierr.BadRequest(name, "missing required parameter: "+name)
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		q.text.add(raw)
		return 1, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil && len(texts) > 0 {
		q.text.add(raw)
		return len(texts), nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		q.text.exact += len(ids)
		return 1, nil
	}
	var many [][]int64
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		for _, m := range many {
			q.text.exact += len(m)
		}
		return len(many), nil
	}
	return 0, apierr.BadRequest(name, name+" must be a non-empty string, array of strings, or array of token ids")
}

// maxEmbeddingInputs is OpenAI's bound on the inputs of one request.
const maxEmbeddingInputs = 2048

// DecodeEmbeddings parses and checks an embeddings body: its input is
// what is reserved and charged.
func DecodeEmbeddings(body []byte) (*Request, error) {
	q, err := newRequest(body, embeddingShape)
	if err != nil {
		return nil, err
	}
	items, err := q.textOrTokens("input")
	if err != nil {
		return nil, err
	}
	if items > maxEmbeddingInputs {
		return nil, apierr.BadRequest("input", fmt.Sprintf("input has %d items; at most %d", items, maxEmbeddingInputs))
	}
	q.template, q.N = templatePerInput*items, 1
	return q, nil
}
