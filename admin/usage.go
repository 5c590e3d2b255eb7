package admin

import (
	"context"
	"encoding/csv"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/money"
	"github.com/obol/obol/usage"
)

// usageTotals is a month's usage of a key, a project or the gateway.
type usageTotals struct {
	TotalTokens int64                `json:"total_tokens"`
	TotalCost   money.Money          `json:"total_cost"`
	ByModel     map[string]usage.Row `json:"by_model"`
	// Project is a key's project (absent for none; the last it had in the
	// month, if it moved).
	Project *string `json:"project,omitempty"`
}

func (t *usageTotals) add(model string, r usage.Row) {
	if t.ByModel == nil {
		t.ByModel = map[string]usage.Row{}
	}
	cur := t.ByModel[model]
	cur.AddRow(r)
	t.ByModel[model] = cur
	t.TotalTokens += r.Prompt + r.Completion
	t.TotalCost += r.Cost
}

// adminUsageReport is GET /v1/admin/usage's answer.
type adminUsageReport struct {
	Period      string                  `json:"period,omitempty"` // or a range:
	Start       *time.Time              `json:"start,omitempty"`
	End         *time.Time              `json:"end,omitempty"`
	TotalTokens int64                   `json:"total_tokens"`
	TotalCost   money.Money             `json:"total_cost"`
	Currency    string                  `json:"currency"`
	ByModel     map[string]usage.Row    `json:"by_model"`
	Keys        map[string]*usageTotals `json:"keys"`
	Projects    map[string]*usageTotals `json:"projects"`
	Days        []*usage.Day            `json:"days,omitempty"`
}

// adminUsage is GET /v1/admin/usage?period=YYYY-MM[&key=ID][&project=ID]
// [&by=day][&format=csv]: every key's and project's month, for a billing
// run, in one read of the ledger.
func (a *API) adminUsage(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if a.usage == nil {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger cannot list every key"}
	}
	q := r.URL.Query()
	bq, period, err := usageRange(r)
	if err != nil {
		return err
	}
	bq.ByKey, bq.ByModel, bq.ByProject = true, true, true
	if k := q.Get("key"); k != "" {
		bq.Keys = []string{k}
	}
	if p := q.Get("project"); p != "" {
		bq.Projects = []string{p}
	}
	rows, err := a.usage.Buckets(r.Context(), bq)
	switch {
	case errors.Is(err, usage.ErrGrain):
		return errGrain("1h")
	case errors.Is(err, context.Canceled):
		return err
	case err != nil:
		return apierr.Unavailable("usage cannot be read", err)
	}
	out := sumUsage(period, rows, q.Get("by") == "day" || bq.Hourly, bq.Hourly)
	if period == "" {
		out.Start, out.End = &bq.Start, &bq.End
	}
	w.Header().Set("Cache-Control", "no-store")
	if q.Get("format") == "csv" {
		keyNames, _ := a.keyNames(r)
		return writeUsageCSV(w, period, out.Keys, keyNames, a.projectNames())
	}
	return httpapi.WriteJSON(w, http.StatusOK, out)
}

// sumUsage sums a month's daily rows by key, project, model and day.
func sumUsage(period string, rows []usage.BucketRow, byDay, hourly bool) *adminUsageReport {
	out := &adminUsageReport{Period: period, Currency: "usd", ByModel: map[string]usage.Row{},
		Keys: map[string]*usageTotals{}, Projects: map[string]*usageTotals{}}
	all := usageTotals{ByModel: out.ByModel}
	days := &usage.Summary{ByModel: map[string]usage.Row{}}
	for _, b := range rows {
		all.add(b.Model, b.Row)
		k := out.Keys[b.Key]
		if k == nil {
			k = &usageTotals{}
			out.Keys[b.Key] = k
		}
		k.add(b.Model, b.Row)
		if b.Project != "" {
			k.Project = &b.Project
			p := out.Projects[b.Project]
			if p == nil {
				p = &usageTotals{}
				out.Projects[b.Project] = p
			}
			p.add(b.Model, b.Row)
		}
		if byDay {
			bucket := b.Start.Format("2006-01-02")
			if hourly {
				bucket = b.Start.Format("2006-01-02T15")
			}
			days.Add(b.Model, bucket, b.Row)
		}
	}
	out.TotalTokens, out.TotalCost, out.Days = all.TotalTokens, all.TotalCost, days.Days
	return out
}

// writeUsageCSV writes the admin usage as CSV: a line per key and model,
// the same figures as the JSON, with the key's and the project's names.
func writeUsageCSV(w http.ResponseWriter, period string, keys map[string]*usageTotals, keyNames, projectNames map[string]string) error {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="obol-usage-`+period+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"period", "api_key_id", "model", "prompt_tokens", "cached_prompt_tokens", "completion_tokens",
		"reasoning_tokens", "requests", "cost_usd", "project_id", "cache_write_5m_tokens", "cache_write_1h_tokens",
		"api_key_name", "project_name"})
	for _, id := range slices.Sorted(maps.Keys(keys)) {
		k := keys[id]
		project := ""
		if k.Project != nil {
			project = *k.Project
		}
		for _, m := range slices.Sorted(maps.Keys(k.ByModel)) {
			r := k.ByModel[m]
			cw.Write([]string{period, id, m, strconv.FormatInt(r.Prompt, 10), strconv.FormatInt(r.CachedPrompt, 10),
				strconv.FormatInt(r.Completion, 10), strconv.FormatInt(r.Reasoning, 10), strconv.FormatInt(r.Requests, 10),
				r.Cost.USD(), project, strconv.FormatInt(r.CacheWrite5m, 10), strconv.FormatInt(r.CacheWrite1h, 10),
				keyNames[id], projectNames[project]})
		}
	}
	cw.Flush()
	return cw.Error()
}

// projectNames are every project's name by id (none without projects).
func (a *API) projectNames() map[string]string {
	names := map[string]string{}
	if a.projects == nil {
		return names
	}
	for _, p := range a.projects.Projects() {
		names[p.ID] = p.Name
	}
	return names
}

// usageRange is the admin usage's time: a month (period=YYYY-MM, the
// current one by default), or start and end (RFC 3339 or Unix seconds)
// in whole UTC days (by=day, the default) or hours (by=hour: the
// PostgreSQL ledger).
func usageRange(r *http.Request) (usage.BucketQuery, string, error) {
	q := r.URL.Query()
	if q.Get("start") == "" && q.Get("end") == "" {
		period, err := httpapi.Period(r)
		if err != nil {
			return usage.BucketQuery{}, "", err
		}
		start, _ := time.Parse("2006-01", period)
		return usage.BucketQuery{Start: start, End: start.AddDate(0, 1, 0)}, period, nil
	}
	rq, _, err := usage.ParseRequestQuery(map[string][]string{"start": q["start"], "end": q["end"]})
	if err != nil {
		return usage.BucketQuery{}, "", QueryError(err)
	}
	if rq.Start.IsZero() || rq.End.IsZero() || !rq.End.After(rq.Start) {
		return usage.BucketQuery{}, "", apierr.BadRequest("end", "a range needs start and end, end after start")
	}
	if b := q.Get("by"); b != "" && b != "day" && b != "hour" {
		return usage.BucketQuery{}, "", apierr.BadRequest("by", "by must be day or hour")
	}
	// The ledger keeps buckets, not requests: a range is whole buckets,
	// its start rounded down and its end up (UTC days, or hours).
	grain := 24 * time.Hour
	if q.Get("by") == "hour" {
		grain = time.Hour
	}
	start, end := rq.Start.Truncate(grain), rq.End.Truncate(grain)
	if end.Before(rq.End) {
		end = end.Add(grain)
	}
	return usage.BucketQuery{Start: start, End: end, Hourly: q.Get("by") == "hour"}, "", nil
}
