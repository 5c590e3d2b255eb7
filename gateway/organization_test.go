package gateway_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
)

// orgPage is OpenAI's organization usage and costs page.
type orgPage struct {
	Object string `json:"object"`
	Data   []struct {
		Object    string           `json:"object"`
		StartTime int64            `json:"start_time"`
		EndTime   int64            `json:"end_time"`
		Results   []map[string]any `json:"results"`
	} `json:"data"`
	HasMore  bool    `json:"has_more"`
	NextPage *string `json:"next_page"`
}

// TestOrganizationEndpoints: after chat and embeddings requests, OpenAI's
// organization usage (completions, embeddings) and costs endpoints answer
// in OpenAI's shapes and agree with /v1/usage; the CSV agrees with the
// JSON; pages carry a cursor; what the ledger cannot answer is a 400.
func TestOrganizationEndpoints(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 5, CachedTokens: 1}, withAdmin(t), withAPIs, withLedger(postgresLedger(t)),
		withPrices(money.Prices{hermesPrice}))
	for _, b := range []struct{ path, body string }{
		{"/v1/chat", hi + `}`}, {"/v1/chat/stream", hi + `}`}, {"/v1/embeddings", `{"model":"hermes","input":"one two three"}`},
	} {
		if status, _ := e.send(t, b.path, b.body); status != 200 {
			t.Fatalf("%s: %d", b.path, status)
		}
	}
	s := e.waitRecorded(t, keyAll, 3)
	day := time.Now().UTC().Truncate(24 * time.Hour)
	start := day.Add(-48 * time.Hour).Unix()
	get := func(path string) (*orgPage, string) {
		resp, body := e.do(t, "GET", path, adminToken, "")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		var p orgPage
		d := json.NewDecoder(strings.NewReader(string(body)))
		d.UseNumber()
		d.Decode(&p)
		return &p, string(body)
	}
	p, raw := get(fmt.Sprintf("/v1/organization/usage/completions?start_time=%d&bucket_width=1d&group_by=model", start))
	if p.Object != "page" || len(p.Data) != 3 || p.Data[2].StartTime != day.Unix() || len(p.Data[0].Results) != 0 || len(p.Data[2].Results) != 1 {
		t.Fatalf("completions page: %s", raw)
	}
	res := p.Data[2].Results[0]
	var inTok, outTok int64
	fmt.Sscan(string(res["input_tokens"].(json.Number)), &inTok)
	fmt.Sscan(string(res["output_tokens"].(json.Number)), &outTok)
	// /v1/usage counts completions and embeddings of hermes together.
	embPrompt := int64(3)
	if res["object"] != "organization.usage.completions.result" || res["model"] != "hermes" || res["api_key_id"] != nil ||
		inTok != s.ByModel["hermes"].Prompt-embPrompt || outTok != s.ByModel["hermes"].Completion || res["input_cached_tokens"] != json.Number("2") {
		t.Errorf("completions result %v; usage %+v", res, s.ByModel["hermes"])
	}
	p, raw = get(fmt.Sprintf("/v1/organization/usage/embeddings?start_time=%d&group_by=api_key_id", day.Unix()))
	if r := p.Data[0].Results; len(r) != 1 || r[0]["input_tokens"] != json.Number("3") || r[0]["api_key_id"] != "key_all" || r[0]["object"] != "organization.usage.embeddings.result" {
		t.Errorf("embeddings page: %s", raw)
	}
	p, raw = get(fmt.Sprintf("/v1/organization/costs?start_time=%d&group_by=line_item", day.Unix()))
	amount := p.Data[0].Results[0]["amount"].(map[string]any)
	if got := usd(t, amount["value"].(json.Number).String()); got != s.TotalCost || amount["currency"] != "usd" || p.Data[0].Results[0]["line_item"] != "hermes" {
		t.Errorf("costs %s; /v1/usage total_cost %s", raw, s.TotalCost.USD())
	}
	// The CSV holds the JSON's figures.
	_, body := e.do(t, "GET", fmt.Sprintf("/v1/organization/costs?start_time=%d&group_by=line_item&format=csv", day.Unix()), adminToken, "")
	lines, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	amountAt := slices.Index(lines[0], "amount")
	if err != nil || len(lines) != 2 || amountAt < 0 || usd(t, lines[1][amountAt]) != s.TotalCost || lines[1][3] != "hermes" ||
		lines[0][len(lines[0])-2] != "api_key_name" || lines[0][len(lines[0])-1] != "project_name" {
		t.Errorf("costs CSV %q, %v", lines, err)
	}
	// Paging: a cursor to the next bucket, which new usage does not move.
	p, raw = get(fmt.Sprintf("/v1/organization/usage/completions?start_time=%d&limit=2", start))
	if !p.HasMore || p.NextPage == nil || len(p.Data) != 2 {
		t.Fatalf("page 1: %s", raw)
	}
	p2, raw2 := get(fmt.Sprintf("/v1/organization/usage/completions?start_time=%d&limit=2&page=%s", start, *p.NextPage))
	if p2.HasMore || len(p2.Data) != 1 || p2.Data[0].StartTime != day.Unix() || len(p2.Data[0].Results) != 1 {
		t.Errorf("page 2: %s", raw2)
	}
	for _, bad := range []string{"bucket_width=1m", "bucket_width=2d", "limit=99", "group_by=user_id", "page=nope"} {
		if resp, body := e.do(t, "GET", fmt.Sprintf("/v1/organization/usage/completions?start_time=%d&%s", start, bad), adminToken, ""); resp.StatusCode != 400 {
			t.Errorf("%s: %d %s", bad, resp.StatusCode, body)
		}
	}
	if resp, _ := e.do(t, "GET", "/v1/organization/costs?bucket_width=1h&start_time=1", adminToken, ""); resp.StatusCode != 400 {
		t.Errorf("costs by hour: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/v1/organization/costs?start_time=1", keyAll, ""); resp.StatusCode != 401 {
		t.Errorf("an API key read the organization's costs: %d", resp.StatusCode)
	}
	// The admin usage CSV holds /v1/usage's figures.
	_, body = e.do(t, "GET", "/v1/admin/usage?format=csv", adminToken, "")
	lines, _ = csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if len(lines) != 2 || lines[1][1] != "key_all" || usd(t, lines[1][8]) != s.TotalCost {
		t.Errorf("admin usage CSV %q", lines)
	}
}

// TestOrganizationHoursNeedPostgres: the embedded ledger keeps days, so
// hourly buckets are a 400 that says so.
func TestOrganizationHoursNeedPostgres(t *testing.T) {
	e := newEnv(t, sim.Config{}, withAdmin(t))
	resp, body := e.do(t, "GET", "/v1/organization/usage/completions?start_time=1&bucket_width=1h", adminToken, "")
	if resp.StatusCode != 400 || !strings.Contains(string(body), "finer than this ledger keeps") {
		t.Errorf("1h on the embedded ledger: %d %s", resp.StatusCode, body)
	}
}
