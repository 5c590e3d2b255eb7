package admin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/money"
	"github.com/obol/obol/usage"
)

// Anthropic's Admin API usage and cost reports, beside OpenAI's, for the
// dashboards written against them (admin token only): the Messages usage
// report, with cache reads and writes by lifetime, and the cost report.
// A project is Anthropic's workspace.

// claudeReport is one of Anthropic's reports.
type claudeReport struct {
	costs  bool
	groups []string
}

var (
	messagesUsageReport = claudeReport{groups: []string{"api_key_id", "workspace_id", "model"}}
	costReport          = claudeReport{costs: true, groups: []string{"workspace_id", "description"}}
)

// claudeParams are the parameters the reports take (each list also as
// name[]).
var claudeParams = map[string]bool{"starting_at": true, "ending_at": true, "bucket_width": true, "limit": true,
	"page": true, "group_by": true, "models": true, "api_key_ids": true, "workspace_ids": true}

func (a *API) claudeReport(rep claudeReport) Handler {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		if a.usage == nil {
			return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger cannot report usage"}
		}
		q, err := parseClaudeReport(r.URL.Query(), rep)
		if err != nil {
			return err
		}
		data, next, err := a.claudeBuckets(r.Context(), rep, q)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		page := map[string]any{"data": data, "has_more": next != "", "next_page": nil}
		if next != "" {
			page["next_page"] = next
		}
		return httpapi.WriteJSON(w, http.StatusOK, page)
	}
}

// parseClaudeReport reads Anthropic's parameters into the query the
// organization reports share: starting_at (RFC 3339, required),
// ending_at, bucket_width (1d, 1h; the cost report 1d), limit, page,
// group_by, models, api_key_ids, workspace_ids.
func parseClaudeReport(v url.Values, rep claudeReport) (*reportQuery, error) {
	for name := range v {
		if !claudeParams[strings.TrimSuffix(name, "[]")] {
			return nil, apierr.BadRequest(name, fmt.Sprintf("unknown parameter %q; this report takes %s", clip.String(name, 40),
				"starting_at, ending_at, bucket_width, limit, page, group_by, models, api_key_ids and workspace_ids"))
		}
	}
	at := func(name string) (time.Time, error) {
		t, err := time.Parse(time.RFC3339, first(v, name))
		if err != nil {
			return time.Time{}, apierr.BadRequest(name, name+" must be an RFC 3339 time such as 2026-12-01T00:00:00Z")
		}
		return t.UTC(), nil
	}
	q := &reportQuery{width: "1d", end: time.Now().UTC()}
	var err error
	if q.start, err = at("starting_at"); err != nil {
		return nil, err
	}
	if first(v, "ending_at") != "" {
		if q.end, err = at("ending_at"); err != nil || !q.end.After(q.start) {
			return nil, apierr.BadRequest("ending_at", "ending_at must be an RFC 3339 time after starting_at")
		}
	}
	if b := first(v, "bucket_width"); b != "" {
		q.width = b
	}
	wd, ok := widths[q.width]
	if !ok || (rep.costs && q.width != "1d") {
		return nil, apierr.BadRequest("bucket_width", "bucket_width must be 1d, 1h or 1m (the cost report: 1d)")
	}
	q.limit, q.start = wd.defaultLimit, q.start.Truncate(wd.d)
	if err := q.pageParams(v, wd.most, rep.groups); err != nil {
		return nil, err
	}
	q.models, q.keys, q.projects = listParam(v, "models"), listParam(v, "api_key_ids"), listParam(v, "workspace_ids")
	return q, nil
}

func first(v url.Values, name string) string {
	if s := v.Get(name); s != "" {
		return s
	}
	return v.Get(name + "[]")
}

// claudeBuckets reads one page of buckets, each with a result per group.
func (a *API) claudeBuckets(ctx context.Context, rep claudeReport, q *reportQuery) ([]map[string]any, string, error) {
	by := grouping{key: slices.Contains(q.groups, "api_key_id"), project: slices.Contains(q.groups, "workspace_id"),
		model: slices.Contains(q.groups, "model") || slices.Contains(q.groups, "description")}
	page, next, err := a.pageBuckets(ctx, q, usage.KindCompletions, by)
	if err != nil {
		return nil, "", err
	}
	data := []map[string]any{}
	for _, b := range page {
		data = append(data, map[string]any{"starting_at": b.start.Format(time.RFC3339), "ending_at": b.end.Format(time.RFC3339),
			"results": rep.results(b.rows, by)})
	}
	return data, next, nil
}

// results sums a bucket's rows by the groups asked for, in Anthropic's
// terms: uncached input (neither read nor written), cache reads, cache
// writes by lifetime, output; a cost as a decimal string of cents. An
// ungrouped dimension is null.
func (rep claudeReport) results(rows []usage.BucketRow, by grouping) []map[string]any {
	groups := sumGroups(rows, by)
	out := make([]map[string]any, 0, len(groups))
	for _, a := range groups {
		res := map[string]any{"workspace_id": nullable(a.project)}
		if rep.costs {
			res["currency"], res["amount"] = "USD", cents(a.row.Cost)
			res["description"], res["model"] = nil, nullable(a.model)
			if a.model != "" {
				res["description"] = a.model + " usage"
			}
			res["cost_type"], res["token_type"], res["context_window"], res["service_tier"] = "tokens", nil, nil, nil
		} else {
			r := a.row
			res["api_key_id"], res["model"] = nullable(a.key), nullable(a.model)
			res["uncached_input_tokens"] = max(r.Prompt-r.CachedPrompt-r.CacheWrite5m-r.CacheWrite1h, 0)
			res["cache_read_input_tokens"] = r.CachedPrompt
			res["cache_creation"] = map[string]int64{"ephemeral_5m_input_tokens": r.CacheWrite5m, "ephemeral_1h_input_tokens": r.CacheWrite1h}
			res["output_tokens"] = r.Completion
			res["server_tool_use"] = map[string]int64{"web_search_requests": 0}
			res["service_tier"], res["context_window"] = nil, nil
		}
		out = append(out, res)
	}
	return out
}

// cents is an amount as Anthropic's cost report writes it: a decimal
// string in cents, exact ("123.45" is $1.2345).
func cents(m money.Money) string {
	const perCent = money.PerDollar / 100
	neg := m < 0
	if neg {
		m = -m
	}
	s := strconv.FormatInt(int64(m/perCent), 10)
	if frac := m % perCent; frac != 0 {
		s += strings.TrimRight("."+fmt.Sprintf("%010d", int64(frac)), "0")
	}
	if neg {
		s = "-" + s
	}
	return s
}
