package sim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
)

// EmbeddingDimensions is the length of every vector the simulator makes,
// unless the request asks for fewer.
const EmbeddingDimensions = 8

type embeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

// embeddings answers /v1/embeddings: a vector per input, as floats or
// (encoding_format "base64", which the openai npm client asks for) as
// base64 of little-endian float32s; usage counts the inputs' tokens
// (words, or the token ids given).
func (s *Server) embeddings(w http.ResponseWriter, r *http.Request, cfg *Config) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		return
	}
	var req embeddingRequest
	if err := json.Unmarshal(body, &req); err != nil || req.Model == "" || len(req.Input) == 0 {
		writeError(w, http.StatusBadRequest, "model and input are required", "BadRequestError")
		return
	}
	tokens, n := embeddingTokens(req.Input, cfg.WorstCase)
	if n == 0 {
		writeError(w, http.StatusBadRequest, "input must be a string, an array of strings, or token ids", "BadRequestError")
		return
	}
	if !s.begin(w, r, cfg, Request{Model: req.Model, Body: body}) {
		return
	}
	dims := EmbeddingDimensions
	if req.Dimensions > 0 && req.Dimensions < dims {
		dims = req.Dimensions
	}
	data := make([]string, n)
	for i := range data {
		data[i] = fmt.Sprintf(`{"object":"embedding","index":%d,"embedding":%s}`, i, vector(i, dims, req.EncodingFormat == "base64"))
	}
	s.promptTokens.Add(int64(tokens))
	s.reportedPrompt.Add(int64(tokens))
	s.completed.Add(1)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"object":"list","data":[%s],"model":%q,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`+"\n",
		strings.Join(data, ","), req.Model, tokens, tokens)
}

// embeddingTokens counts an input's tokens and its items.
func embeddingTokens(raw json.RawMessage, worst bool) (tokens, items int) {
	if texts := textInputs(raw); texts != nil {
		for _, t := range texts {
			n := max(len(strings.Fields(t)), 1)
			if worst {
				n = len(t) + 1 // a token a byte, and one to begin
			}
			tokens += n
		}
		return tokens, len(texts)
	}
	var ids []int
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return len(ids), 1
	}
	var many [][]int
	if json.Unmarshal(raw, &many) == nil {
		for _, m := range many {
			tokens += len(m)
		}
		return tokens, len(many)
	}
	return 0, 0
}

// vector is input i's embedding: unit-length and predictable.
func vector(i, dims int, b64 bool) string {
	v := make([]float32, dims)
	norm := 0.0
	for d := range v {
		v[d] = float32(math.Sin(float64(i+1) * float64(d+1)))
		norm += float64(v[d]) * float64(v[d])
	}
	for d := range v {
		v[d] /= float32(math.Sqrt(norm))
	}
	if b64 {
		buf := make([]byte, 4*dims)
		for d, f := range v {
			binary.LittleEndian.PutUint32(buf[4*d:], math.Float32bits(f))
		}
		return strconv.Quote(base64.StdEncoding.EncodeToString(buf))
	}
	out, _ := json.Marshal(v)
	return string(out)
}
