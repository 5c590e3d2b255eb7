package usage

import (
	"context"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/obol/obol/money"
)

// The request log: one entry per request, newest first, with filters and
// a cursor that new requests do not move. PostgreSQL keeps it in
// request_log, the embedded store in a bounded bucket of its own.

// RequestEntry is one request as the log shows it.
type RequestEntry struct {
	Time       time.Time   `json:"time"`
	RequestID  string      `json:"request_id"`
	Key        string      `json:"key_id"`
	KeyName    string      `json:"key_name"` // filled in by the reader that knows the names
	Project    string      `json:"project"`
	Model      string      `json:"model"`
	Backend    string      `json:"backend"`
	API        string      `json:"api"`
	Stream     bool        `json:"stream"`
	Status     int         `json:"status"`
	ErrorCode  string      `json:"error_code"`
	Outcome    string      `json:"outcome"` // a stream's: completed, client_gone, upstream_error, shutdown
	ClientGone bool        `json:"client_closed"`
	Prompt     int64       `json:"prompt_tokens"`
	Cached     int64       `json:"cached_tokens"`
	Write5m    int64       `json:"cache_write_5m_tokens"`
	Write1h    int64       `json:"cache_write_1h_tokens"`
	Completion int64       `json:"completion_tokens"`
	Reasoning  int64       `json:"reasoning_tokens"`
	Cost       money.Money `json:"cost"`
	TTFTMs     float64     `json:"ttft_ms"`
	DurationMs float64     `json:"duration_ms"`
}

// entryOf is a record as the log shows it.
func entryOf(r Record) RequestEntry {
	return RequestEntry{Time: r.Time.UTC(), RequestID: r.RequestID, Key: r.Key, Project: r.Project, Model: r.Model,
		Backend: r.Backend, API: r.API, Stream: r.Outcome != "", Status: r.Status, ErrorCode: r.ErrorCode, Outcome: r.Outcome,
		ClientGone: r.Outcome == "client_gone" || r.ErrorCode == "client_closed", Prompt: r.PromptTokens, Cached: r.CachedTokens,
		Write5m: r.CacheWrite5mTokens, Write1h: r.CacheWrite1hTokens, Completion: r.CompletionTokens, Reasoning: r.ReasoningTokens,
		Cost: r.Cost, TTFTMs: ms(r.TTFT), DurationMs: ms(r.Duration)}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// RequestQuery filters the log. Zero fields do not filter.
type RequestQuery struct {
	Start, End     time.Time // [Start, End)
	RequestID      string
	Key, Project   string
	Model          string
	StatusClass    int // 2, 4 or 5: 2xx, 4xx, 5xx
	ErrorCode      string
	MinCost        money.Money
	Limit          int    // 1 to 1000; 0 means 100
	Cursor         string // the Next of the previous page
	beforeT        time.Time
	beforeID       string
	hasBefore      bool
	limitOrDefault int
}

// ErrBadCursor is a cursor this log did not give.
var ErrBadCursor = errors.New("not a cursor of this request log")

// ErrNoRequestLog is a store that keeps no request log.
var ErrNoRequestLog = errors.New("this ledger keeps no request log")

// prepare checks q and decodes its cursor.
func (q *RequestQuery) prepare() error {
	q.limitOrDefault = q.Limit
	if q.limitOrDefault <= 0 {
		q.limitOrDefault = 100
	}
	q.limitOrDefault = min(q.limitOrDefault, 1000)
	if q.Cursor == "" {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
	at, id, ok := strings.Cut(string(raw), "/")
	n, perr := strconv.ParseInt(at, 10, 64)
	if err != nil || !ok || perr != nil || id == "" {
		return ErrBadCursor
	}
	q.beforeT, q.beforeID, q.hasBefore = time.Unix(0, n).UTC(), id, true
	return nil
}

// cursorAfter is the cursor of the page that follows e: entries older
// than it, by time then id.
func cursorAfter(e RequestEntry) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(e.Time.UnixNano(), 10) + "/" + e.RequestID))
}

// matches reports whether e passes q's filters (the embedded store's).
func (q *RequestQuery) matches(e *RequestEntry) bool {
	switch {
	case !q.Start.IsZero() && e.Time.Before(q.Start), !q.End.IsZero() && !e.Time.Before(q.End):
		return false
	case q.Key != "" && e.Key != q.Key, q.Project != "" && e.Project != q.Project, q.Model != "" && e.Model != q.Model,
		q.RequestID != "" && e.RequestID != q.RequestID:
		return false
	case q.StatusClass != 0 && e.Status/100 != q.StatusClass, q.ErrorCode != "" && e.ErrorCode != q.ErrorCode:
		return false
	case e.Cost < q.MinCost:
		return false
	}
	return true
}

// requestLog is a store that keeps the request log.
type requestLog interface {
	Requests(ctx context.Context, q RequestQuery) ([]RequestEntry, error)
}

// Requests reads a page of the request log, newest first, and the cursor
// of the next page ("" at the end).
func (l *Ledger) Requests(ctx context.Context, q RequestQuery) ([]RequestEntry, string, error) {
	rl, ok := l.store.(requestLog)
	if !ok {
		return nil, "", ErrNoRequestLog
	}
	if err := q.prepare(); err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(ctx, l.opt.Timeout)
	defer cancel()
	page, err := rl.Requests(ctx, q)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(page) > q.limitOrDefault {
		page = page[:q.limitOrDefault]
		next = cursorAfter(page[len(page)-1])
	}
	return page, next, nil
}

// WriteRequestsCSV writes entries as CSV, a header line first: the same
// fields as the JSON, cost in USD.
func WriteRequestsCSV(w io.Writer, entries []RequestEntry) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"time", "request_id", "key_id", "key_name", "project", "model", "backend", "api", "stream", "status",
		"error_code", "outcome", "client_closed", "prompt_tokens", "cached_tokens", "cache_write_5m_tokens", "cache_write_1h_tokens",
		"completion_tokens", "reasoning_tokens", "cost_usd", "ttft_ms", "duration_ms"})
	i := func(n int64) string { return strconv.FormatInt(n, 10) }
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	for _, e := range entries {
		cw.Write([]string{e.Time.Format(time.RFC3339Nano), e.RequestID, e.Key, e.KeyName, e.Project, e.Model, e.Backend, e.API,
			strconv.FormatBool(e.Stream), strconv.Itoa(e.Status), e.ErrorCode, e.Outcome, strconv.FormatBool(e.ClientGone),
			i(e.Prompt), i(e.Cached), i(e.Write5m), i(e.Write1h), i(e.Completion), i(e.Reasoning), e.Cost.USD(), f(e.TTFTMs), f(e.DurationMs)})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write the request log: %w", err)
	}
	return nil
}

// QueryError is a request log parameter that cannot be read.
type QueryError struct{ Param, Msg string }

func (e *QueryError) Error() string { return e.Param + ": " + e.Msg }

// ParseRequestQuery reads the request log's parameters: start and end
// (RFC 3339 or Unix seconds), request_id, key, project, model, status (2xx, 4xx or
// 5xx), error_code, min_cost (USD), limit, cursor; csv is format=csv.
func ParseRequestQuery(v map[string][]string) (q RequestQuery, csv bool, err error) {
	get := func(name string) string {
		if vs := v[name]; len(vs) > 0 {
			return vs[0]
		}
		return ""
	}
	known := map[string]bool{"start": true, "end": true, "request_id": true, "key": true, "project": true, "model": true, "status": true,
		"error_code": true, "min_cost": true, "limit": true, "cursor": true, "format": true}
	for name := range v {
		if !known[name] {
			return q, false, &QueryError{name, "unknown parameter; the request log takes start, end, request_id, key, project, model, status, error_code, min_cost, limit, cursor and format"}
		}
	}
	at := func(name string) (time.Time, error) {
		s := get(name)
		if s == "" {
			return time.Time{}, nil
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.Unix(n, 0).UTC(), nil
		}
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return time.Time{}, &QueryError{name, "want an RFC 3339 time or Unix seconds"}
		}
		return t.UTC(), nil
	}
	if q.Start, err = at("start"); err != nil {
		return q, false, err
	}
	if q.End, err = at("end"); err != nil {
		return q, false, err
	}
	q.Key, q.Project, q.Model, q.ErrorCode, q.Cursor = get("key"), get("project"), get("model"), get("error_code"), get("cursor")
	q.RequestID = get("request_id")
	switch s := get("status"); s {
	case "":
	case "2xx", "4xx", "5xx":
		q.StatusClass = int(s[0] - '0')
	default:
		return q, false, &QueryError{"status", "want 2xx, 4xx or 5xx"}
	}
	if s := get("min_cost"); s != "" {
		if q.MinCost, err = money.ParseUSD(s); err != nil {
			return q, false, &QueryError{"min_cost", "want an amount in USD, such as 0.01"}
		}
	}
	if s := get("limit"); s != "" {
		if q.Limit, err = strconv.Atoi(s); err != nil || q.Limit < 1 || q.Limit > 1000 {
			return q, false, &QueryError{"limit", "want 1 to 1000"}
		}
	}
	switch f := get("format"); f {
	case "", "json":
	case "csv":
		csv = true
	default:
		return q, false, &QueryError{"format", "want json or csv"}
	}
	return q, csv, nil
}
