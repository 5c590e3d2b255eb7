package admin

import (
	"context"
	"encoding/csv"
	"errors"
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

// The organization usage and costs endpoints, in OpenAI's shapes, for the
// billing dashboards and tools written against them (admin token only).

// report is what one organization endpoint reads and shows.
type report struct {
	kind    string   // usage.KindCompletions, usage.KindEmbeddings, or "" for costs
	object  string   // each result's object
	groups  []string // the group_by values it takes
	costs   bool     // results are amounts, buckets only 1d
	maxWide int      // the largest limit of 1d buckets
}

var (
	completionsReport = report{kind: usage.KindCompletions, object: "organization.usage.completions.result",
		groups: []string{"model", "api_key_id", "project_id"}, maxWide: 31}
	embeddingsReport = report{kind: usage.KindEmbeddings, object: "organization.usage.embeddings.result",
		groups: []string{"model", "api_key_id", "project_id"}, maxWide: 31}
	costsReport = report{object: "organization.costs.result", groups: []string{"line_item", "project_id", "api_key_id"},
		costs: true, maxWide: 180}
)

// width is a bucket width: its duration, and the buckets a page holds
// by default and at most (OpenAI's).
type width struct {
	d                  time.Duration
	defaultLimit, most int
}

var widths = map[string]width{"1d": {24 * time.Hour, 7, 31}, "1h": {time.Hour, 24, 168}, "1m": {time.Minute, 60, 1440}}

// reportQuery is a report's parsed parameters.
type reportQuery struct {
	start, end time.Time
	width      string
	limit      int
	groups     []string
	models     []string
	keys       []string
	projects   []string
	csv        bool
}

func (a *API) organization(rep report) Handler {
	return func(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
		if a.usage == nil {
			return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this ledger cannot report usage"}
		}
		q, err := parseReport(r.URL.Query(), rep)
		if err != nil {
			return err
		}
		buckets, next, err := a.reportBuckets(r.Context(), rep, q)
		if err != nil {
			return err
		}
		w.Header().Set("Cache-Control", "no-store")
		if q.csv {
			if next != "" {
				w.Header().Set("X-Next-Page", next)
			}
			keyNames, _ := a.keyNames(r)
			return writeReportCSV(w, rep, q, buckets, keyNames, a.projectNames())
		}
		page := map[string]any{"object": "page", "data": buckets, "has_more": next != "", "next_page": nil}
		if next != "" {
			page["next_page"] = next
		}
		return httpapi.WriteJSON(w, http.StatusOK, page)
	}
}

// parseReport reads OpenAI's parameters: start_time (required), end_time,
// bucket_width, limit, page, group_by, models, api_key_ids, project_ids,
// format.
func parseReport(v url.Values, rep report) (*reportQuery, error) {
	for name := range v {
		if base, list := strings.CutSuffix(name, "[]"); !reportParams[name] && !(list && reportLists[base]) {
			return nil, apierr.BadRequest(name, fmt.Sprintf("unknown parameter %q; these reports take start_time, end_time, bucket_width, limit, page, group_by, models, api_key_ids, project_ids and format",
				clip.String(name, 40)))
		}
	}
	q := &reportQuery{width: "1d", csv: v.Get("format") == "csv"}
	if f := v.Get("format"); f != "" && f != "csv" && f != "json" {
		return nil, apierr.BadRequest("format", "format must be json or csv")
	}
	start, err := strconv.ParseInt(v.Get("start_time"), 10, 64)
	if err != nil {
		return nil, apierr.BadRequest("start_time", "start_time is required: a Unix time in seconds")
	}
	q.start, q.end = time.Unix(start, 0).UTC(), time.Now().UTC()
	if e := v.Get("end_time"); e != "" {
		end, err := strconv.ParseInt(e, 10, 64)
		if err != nil || end <= start {
			return nil, apierr.BadRequest("end_time", "end_time must be a Unix time after start_time")
		}
		q.end = time.Unix(end, 0).UTC()
	}
	if b := v.Get("bucket_width"); b != "" {
		q.width = b
	}
	wd, ok := widths[q.width]
	if !ok || (rep.costs && q.width != "1d") {
		return nil, apierr.BadRequest("bucket_width", "bucket_width must be 1d, 1h or 1m (costs: 1d)")
	}
	q.limit, q.start = wd.defaultLimit, q.start.Truncate(wd.d)
	if rep.costs {
		q.limit = 7
	}
	maxLimit := wd.most
	if q.width == "1d" {
		maxLimit = rep.maxWide
	}
	if err := q.pageParams(v, maxLimit, rep.groups); err != nil {
		return nil, err
	}
	q.models, q.keys, q.projects = listParam(v, "models"), listParam(v, "api_key_ids"), listParam(v, "project_ids")
	return q, nil
}

// pageParams reads what both shapes' reports page and group by: limit
// (1 to most), page (a next_page given) and group_by (one of groups).
func (q *reportQuery) pageParams(v url.Values, most int, groups []string) error {
	if l := first(v, "limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > most {
			return apierr.BadRequest("limit", fmt.Sprintf("limit must be 1 to %d for %s buckets", most, q.width))
		}
		q.limit = n
	}
	if p := first(v, "page"); p != "" {
		at, err := strconv.ParseInt(strings.TrimPrefix(p, "page_"), 10, 64)
		if err != nil || !strings.HasPrefix(p, "page_") || at < q.start.Unix() {
			return apierr.BadRequest("page", "page must be a next_page this endpoint gave")
		}
		q.start = time.Unix(at, 0).UTC()
	}
	for _, g := range listParam(v, "group_by") {
		if !slices.Contains(groups, g) {
			return apierr.BadRequest("group_by", "group_by must be one of "+strings.Join(groups, ", "))
		}
		q.groups = append(q.groups, g)
	}
	return nil
}

// reportParams are the parameters the reports take; reportLists those
// that are lists, also taken as name[] (as the openai SDKs send arrays).
var (
	reportParams = map[string]bool{"start_time": true, "end_time": true, "bucket_width": true, "limit": true,
		"page": true, "group_by": true, "models": true, "api_key_ids": true, "project_ids": true, "format": true}
	reportLists = map[string]bool{"group_by": true, "models": true, "api_key_ids": true, "project_ids": true}
)

// listParam reads a list given as name=a&name=b, name[]=a or name=a,b.
func listParam(v url.Values, name string) []string {
	var out []string
	for _, s := range append(v[name], v[name+"[]"]...) {
		for _, p := range strings.Split(s, ",") {
			if p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// bucket is one time bucket of a report's page and the ledger's rows in
// it.
type bucket struct {
	start, end time.Time
	rows       []usage.BucketRow
}

// grouping is the dimensions a report's results are summed by.
type grouping struct{ key, model, project bool }

// pageBuckets reads one page of buckets of kind (every kind: ""): up to
// limit of them from start, and the next page's cursor (the next
// bucket's start: new usage arriving does not move it).
func (a *API) pageBuckets(ctx context.Context, q *reportQuery, kind string, by grouping) ([]bucket, string, error) {
	if q.width == "1m" {
		return nil, "", errGrain(q.width)
	}
	wd := widths[q.width]
	end := q.start.Add(time.Duration(q.limit) * wd.d)
	next := ""
	if end.Before(q.end) {
		next = "page_" + strconv.FormatInt(end.Unix(), 10)
	} else {
		end = q.end
	}
	rows, err := a.usage.Buckets(ctx, usage.BucketQuery{Start: q.start, End: end, Hourly: q.width != "1d",
		Kind: kind, Keys: q.keys, Models: q.models, Projects: q.projects, ByKey: by.key, ByModel: by.model, ByProject: by.project})
	switch {
	case errors.Is(err, usage.ErrGrain):
		return nil, "", errGrain(q.width)
	case errors.Is(err, context.Canceled):
		return nil, "", err
	case err != nil:
		return nil, "", apierr.Unavailable("usage cannot be read", err)
	}
	var out []bucket
	i := 0
	for b := q.start; b.Before(end); b = b.Add(wd.d) {
		bk := bucket{start: b, end: b.Add(wd.d)}
		for ; i < len(rows) && rows[i].Start.Before(bk.end); i++ {
			bk.rows = append(bk.rows, rows[i])
		}
		out = append(out, bk)
	}
	return out, next, nil
}

// groupSum is one result's dimensions ("" where not grouped) and sums.
type groupSum struct {
	groupKey
	row usage.Row
}

type groupKey struct{ key, model, project string }

// sumGroups sums rows by the dimensions of by, in the order each group
// first appears.
func sumGroups(rows []usage.BucketRow, by grouping) []*groupSum {
	var order []*groupSum
	sums := map[groupKey]*groupSum{}
	for _, r := range rows {
		var g groupKey
		if by.key {
			g.key = r.Key
		}
		if by.model {
			g.model = r.Model
		}
		if by.project {
			g.project = r.Project
		}
		if sums[g] == nil {
			sums[g] = &groupSum{groupKey: g}
			order = append(order, sums[g])
		}
		sums[g].row.AddRow(r.Row)
	}
	return order
}

// openAIGrouping is what OpenAI's group_by values group by.
func openAIGrouping(groups []string) grouping {
	return grouping{key: slices.Contains(groups, "api_key_id"), project: slices.Contains(groups, "project_id"),
		model: slices.Contains(groups, "model") || slices.Contains(groups, "line_item")}
}

// reportBuckets reads one page of buckets, each with a result per group.
func (a *API) reportBuckets(ctx context.Context, rep report, q *reportQuery) ([]map[string]any, string, error) {
	by := openAIGrouping(q.groups)
	page, next, err := a.pageBuckets(ctx, q, rep.kind, by)
	if err != nil {
		return nil, "", err
	}
	var buckets []map[string]any
	for _, b := range page {
		buckets = append(buckets, map[string]any{"object": "bucket", "start_time": b.start.Unix(), "end_time": b.end.Unix(),
			"results": rep.results(b.rows, by)})
	}
	return buckets, next, nil
}

func errGrain(w string) *apierr.Error {
	return apierr.BadRequest("bucket_width", "bucket_width "+w+" is finer than this ledger keeps: the PostgreSQL ledger keeps hours (1h, 1d), the embedded one days (1d)")
}

// results sums a bucket's rows by the groups asked for; an ungrouped
// dimension is null, as OpenAI's are.
func (rep report) results(rows []usage.BucketRow, by grouping) []map[string]any {
	groups := sumGroups(rows, by)
	out := make([]map[string]any, 0, len(groups))
	for _, a := range groups {
		res := map[string]any{"object": rep.object, "project_id": nullable(a.project), "api_key_id": nullable(a.key)}
		switch {
		case rep.costs:
			res["amount"] = map[string]any{"value": a.row.Cost, "currency": "usd"}
			res["line_item"] = nullable(a.model)
		case rep.kind == usage.KindEmbeddings:
			res["input_tokens"], res["num_model_requests"] = a.row.Prompt, a.row.Requests
			res["model"], res["user_id"] = nullable(a.model), nil
		default:
			res["input_tokens"], res["output_tokens"], res["input_cached_tokens"] = a.row.Prompt, a.row.Completion, a.row.CachedPrompt
			res["input_audio_tokens"], res["output_audio_tokens"], res["num_model_requests"] = 0, 0, a.row.Requests
			// obol's, where OpenAI's shape has none: cache writes by lifetime.
			res["input_cache_write_5m_tokens"], res["input_cache_write_1h_tokens"] = a.row.CacheWrite5m, a.row.CacheWrite1h
			res["model"], res["user_id"], res["batch"] = nullable(a.model), nil, nil
		}
		out = append(out, res)
	}
	return out
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// writeReportCSV writes the page as CSV: a header line, then one row per
// bucket and group, the same figures as the JSON, and the key's and the
// project's names.
func writeReportCSV(w http.ResponseWriter, rep report, q *reportQuery, buckets []map[string]any, keyNames, projectNames map[string]string) error {
	cols := []string{"project_id", "api_key_id", "model"}
	values := []string{"input_tokens", "input_cached_tokens", "output_tokens", "num_model_requests"}
	switch {
	case rep.costs:
		cols, values = []string{"line_item", "project_id", "api_key_id"}, []string{"amount", "currency"}
	case rep.kind == usage.KindEmbeddings:
		values = []string{"input_tokens", "num_model_requests"}
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="obol-`+strings.ReplaceAll(rep.object, ".", "-")+`.csv"`)
	cw := csv.NewWriter(w)
	cw.Write(append(append(append([]string{"start_time", "end_time", "start_time_iso"}, cols...), values...), "api_key_name", "project_name"))
	for _, b := range buckets {
		start := b["start_time"].(int64)
		for _, res := range b["results"].([]map[string]any) {
			line := []string{strconv.FormatInt(start, 10), strconv.FormatInt(b["end_time"].(int64), 10), time.Unix(start, 0).UTC().Format(time.RFC3339)}
			for _, c := range cols {
				line = append(line, csvValue(res[c]))
			}
			for _, v := range values {
				switch v {
				case "amount":
					line = append(line, res["amount"].(map[string]any)["value"].(money.Money).USD())
				case "currency":
					line = append(line, "usd")
				default:
					line = append(line, csvValue(res[v]))
				}
			}
			key, _ := res["api_key_id"].(string)
			project, _ := res["project_id"].(string)
			cw.Write(append(line, keyNames[key], projectNames[project]))
		}
	}
	cw.Flush()
	return cw.Error()
}

func csvValue(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}
