package usage

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/obol/obol/money"
)

// Record is one request's usage, written to the ledger exactly once.
type Record struct {
	RequestID        string    `json:"request_id"`        // the idempotency key: a second write of it is a no-op
	Key              string    `json:"key_id"`            // the API key's id
	Project          string    `json:"project,omitempty"` // the key's project when the request arrived
	Model            string    `json:"model"`             // the public model name
	Time             time.Time `json:"time"`              // when the request arrived; it picks the hour, day and month
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	// CachedTokens are the prompt tokens the backend served from its cache
	// (prompt_tokens_details.cached_tokens; within PromptTokens);
	// ReasoningTokens the completion tokens spent reasoning
	// (completion_tokens_details.reasoning_tokens; within
	// CompletionTokens). 0 where not reported.
	CachedTokens    int64 `json:"cached_tokens,omitempty"`
	ReasoningTokens int64 `json:"reasoning_tokens,omitempty"`
	// CacheWrite5mTokens and CacheWrite1hTokens are the prompt tokens
	// written to the backend's cache for five minutes and for an hour
	// (within PromptTokens, beside CachedTokens).
	CacheWrite5mTokens int64 `json:"cache_write_5m_tokens,omitempty"`
	CacheWrite1hTokens int64 `json:"cache_write_1h_tokens,omitempty"`
	// Kind is what OpenAI's organization usage files it under: "" or
	// KindCompletions (chat, responses, legacy completions), or
	// KindEmbeddings.
	Kind string `json:"kind,omitempty"`
	// Cost is what the request cost, fixed when it was recorded: its
	// tokens at its model's price in effect when it arrived.
	Cost money.Money `json:"cost_pusd,omitempty"`
	// For the per-request log: the HTTP status answered, a stream's
	// outcome, and whether the counts are the gateway's own.
	Status  int    `json:"status,omitempty"`
	Outcome string `json:"outcome,omitempty"`
	Counted bool   `json:"counted,omitempty"`
	// API is the route's API, for the per-request log: chat,
	// chat/completions, responses, messages, completions, embeddings.
	API string `json:"api,omitempty"`
	// For the per-request log too: the backend that answered, the error
	// code answered, the time to the first token and the whole duration.
	Backend   string        `json:"backend,omitempty"`
	ErrorCode string        `json:"error_code,omitempty"`
	TTFT      time.Duration `json:"ttft_ns,omitempty"`
	Duration  time.Duration `json:"duration_ns,omitempty"`
	// LogOnly is a request no backend answered (refused, or failed before
	// any token): it goes to the request log and adds no usage.
	LogOnly bool `json:"log_only,omitempty"`
}

// The kinds of usage.
const (
	KindCompletions = "completions"
	KindEmbeddings  = "embeddings"
)

// kind is the record's kind, completions by default.
func (r Record) kind() string {
	if r.Kind == "" {
		return KindCompletions
	}
	return r.Kind
}

// Period returns the record's UTC month, YYYY-MM.
func (r Record) Period() string { return r.Time.UTC().Format("2006-01") }

// Row is the ledger of one key and model over a time: tokens by category
// (cache reads and writes are within prompt, reasoning tokens within
// completion) and requests.
type Row struct {
	Prompt       int64       `json:"prompt"`
	CachedPrompt int64       `json:"cached_prompt"`
	CacheWrite5m int64       `json:"cache_write_5m,omitempty"`
	CacheWrite1h int64       `json:"cache_write_1h,omitempty"`
	Completion   int64       `json:"completion"`
	Reasoning    int64       `json:"reasoning"`
	Requests     int64       `json:"requests"`
	Cost         money.Money `json:"cost"` // USD in JSON
}

// AddRow adds o to r.
func (r *Row) AddRow(o Row) {
	r.Prompt += o.Prompt
	r.CachedPrompt += o.CachedPrompt
	r.CacheWrite5m += o.CacheWrite5m
	r.CacheWrite1h += o.CacheWrite1h
	r.Completion += o.Completion
	r.Reasoning += o.Reasoning
	r.Requests += o.Requests
	r.Cost += o.Cost
}

// row is what one record adds.
func (r Record) row() Row {
	return Row{Prompt: r.PromptTokens, CachedPrompt: r.CachedTokens, CacheWrite5m: r.CacheWrite5mTokens,
		CacheWrite1h: r.CacheWrite1hTokens, Completion: r.CompletionTokens,
		Reasoning: r.ReasoningTokens, Requests: 1, Cost: r.Cost}
}

// Summary is a key's month: the /v1/usage shape (docs/api.md).
type Summary struct {
	Period      string         `json:"period"`
	TotalTokens int64          `json:"total_tokens"`
	TotalCost   money.Money    `json:"total_cost"`
	Currency    string         `json:"currency"`
	ByModel     map[string]Row `json:"by_model"`
	// Days are the UTC days of the period that have usage, in order.
	Days []*Day `json:"days,omitempty"`
}

// Day is one UTC day of a Summary.
type Day struct {
	Date        string         `json:"date"` // YYYY-MM-DD
	TotalTokens int64          `json:"total_tokens"`
	TotalCost   money.Money    `json:"total_cost"`
	ByModel     map[string]Row `json:"by_model"`
}

func newSummary(period string) *Summary {
	return &Summary{Period: period, Currency: "usd", ByModel: map[string]Row{}}
}

// Add counts a row of a model on a day (YYYY-MM-DD; "" when unknown).
func (s *Summary) Add(model, date string, r Row) {
	cur := s.ByModel[model]
	cur.AddRow(r)
	s.ByModel[model] = cur
	s.TotalTokens += r.Prompt + r.Completion
	s.TotalCost += r.Cost
	if date == "" {
		return
	}
	i := sort.Search(len(s.Days), func(i int) bool { return s.Days[i].Date >= date })
	if i == len(s.Days) || s.Days[i].Date != date {
		s.Days = slices.Insert(s.Days, i, &Day{Date: date, ByModel: map[string]Row{}})
	}
	d := s.Days[i]
	dr := d.ByModel[model]
	dr.AddRow(r)
	d.ByModel[model] = dr
	d.TotalTokens += r.Prompt + r.Completion
	d.TotalCost += r.Cost
}

// ParsePeriod checks a YYYY-MM period.
func ParsePeriod(p string) (string, error) {
	t, err := time.Parse("2006-01", p)
	if err != nil || t.Format("2006-01") != p {
		return "", fmt.Errorf("period %q: want YYYY-MM", p)
	}
	return p, nil
}

// BucketQuery selects usage for the organization reports: rows by time
// bucket, key, model and kind.
type BucketQuery struct {
	Start, End time.Time // [Start, End)
	Hourly     bool      // hour buckets; else UTC days
	Kind       string    // KindCompletions, KindEmbeddings, or "" for both
	Keys       []string  // only these keys; none: every key
	Models     []string  // only these models; none: every model
	Projects   []string  // only these projects ("" is no project); none: all
	// ByKey, ByModel and ByProject keep keys, models and projects apart;
	// otherwise a bucket's rows are summed over them (Key, Model, Project
	// "").
	ByKey, ByModel, ByProject bool
}

// BucketRow is one key's usage of one model in one bucket.
type BucketRow struct {
	Start               time.Time
	Key, Model, Project string
	Kind                string
	Row
}

// ErrGrain is a bucket finer than a store keeps.
var ErrGrain = errors.New("the store does not keep buckets that fine")

// MonthSpend is a month's usage as the API shows a key's or a project's
// spend.
type MonthSpend struct {
	Period   string      `json:"period"`
	Cost     money.Money `json:"cost"`
	Tokens   int64       `json:"tokens"`
	Requests int64       `json:"requests"`
	Currency string      `json:"currency"`
	// The prompt tokens among Tokens read from and written to a backend's
	// cache, where there were any.
	CachedPrompt int64 `json:"cached_prompt,omitempty"`
	CacheWrite5m int64 `json:"cache_write_5m,omitempty"`
	CacheWrite1h int64 `json:"cache_write_1h,omitempty"`
}

// SpendOf is a month's row (period YYYY-MM) as its spend.
func SpendOf(period string, r Row) *MonthSpend {
	return &MonthSpend{Period: period, Cost: r.Cost, Tokens: r.Prompt + r.Completion, Requests: r.Requests, Currency: "usd",
		CachedPrompt: r.CachedPrompt, CacheWrite5m: r.CacheWrite5m, CacheWrite1h: r.CacheWrite1h}
}
