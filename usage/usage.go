package usage

import (
	"fmt"
	"time"
)

// Record is one request's usage, written to the ledger exactly once.
type Record struct {
	RequestID        string    `json:"request_id"` // the idempotency key: a second write of it is a no-op
	Key              string    `json:"key_id"`     // the API key's id
	Model            string    `json:"model"`      // the public model name
	Time             time.Time `json:"time"`       // when the request arrived; it picks the month
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
}

// Period returns the record's UTC month, YYYY-MM.
func (r Record) Period() string { return r.Time.UTC().Format("2006-01") }

// Row is one (key, month, model) line of the ledger.
type Row struct {
	Prompt     int64 `json:"prompt"`
	Completion int64 `json:"completion"`
	Requests   int64 `json:"requests"`
}

// Summary is a key's month: DESIGN.md's /v1/usage shape.
type Summary struct {
	Period      string         `json:"period"`
	TotalTokens int64          `json:"total_tokens"`
	ByModel     map[string]Row `json:"by_model"`
}

func newSummary(period string) *Summary {
	return &Summary{Period: period, ByModel: map[string]Row{}}
}

func (s *Summary) add(model string, r Row) {
	cur := s.ByModel[model]
	cur.Prompt += r.Prompt
	cur.Completion += r.Completion
	cur.Requests += r.Requests
	s.ByModel[model] = cur
	s.TotalTokens += r.Prompt + r.Completion
}

// ParsePeriod checks a YYYY-MM period.
func ParsePeriod(p string) (string, error) {
	t, err := time.Parse("2006-01", p)
	if err != nil || t.Format("2006-01") != p {
		return "", fmt.Errorf("period %q: want YYYY-MM", p)
	}
	return p, nil
}
