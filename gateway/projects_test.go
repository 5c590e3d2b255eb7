package gateway_test

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

// TestAdminProjects: projects made, read, changed and deleted through
// the admin API hold their keys to their limits at once; the
// configuration's are listed and read-only; bad bodies are 400s naming
// the field.
func TestAdminProjects(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 2}, withAdmin(t), withLedger(postgresLedger(t)), withProject("acme", quota.Limits{RPM: 100}))
	resp, body := e.do(t, "POST", "/v1/admin/projects", adminToken,
		`{"id":"beta","name":"Beta <b>","limits":{"rpm":2},"budget":{"monthly":5,"alert_at":[0.5,1]},"metadata":{"team":"x"}}`)
	if resp.StatusCode != 201 || !strings.Contains(string(body), `"budget":{"monthly":5,"alert_at":[0.5,1],"strict":false}`) ||
		!strings.Contains(string(body), `"limits":{"rpm":2,"tpm":null,"tpd":null,"concurrency":null}`) || !strings.Contains(string(body), `"source":"api"`) {
		t.Fatalf("create: %d %s", resp.StatusCode, body)
	}
	resp, body = e.do(t, "POST", "/v1/admin/projects", adminToken, `{"name":"no id"}`)
	var auto struct{ ID string }
	json.Unmarshal(body, &auto)
	if resp.StatusCode != 201 || !strings.HasPrefix(auto.ID, "proj_") {
		t.Errorf("create without an id: %d %s", resp.StatusCode, body)
	}
	for _, tt := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/v1/admin/projects", `{"id":"beta"}`, 409, `"code":"conflict"`},
		{"POST", "/v1/admin/projects", `{"id":"acme"}`, 409, `"code":"conflict"`},
		{"POST", "/v1/admin/projects", `{"id":"Not OK"}`, 400, `"param":"id"`},
		{"POST", "/v1/admin/projects", `{"id":"x","limits":{"rpm":-1}}`, 400, `"param":"limits.rpm"`},
		{"POST", "/v1/admin/projects", `{"id":"x","limits":{"rps":1}}`, 400, `"param":"limits.rps"`},
		{"POST", "/v1/admin/projects", `{"id":"x","budget":{"monthly":5,"alert_at":[2,1]}}`, 400, `"param":"budget.alert_at"`},
		{"POST", "/v1/admin/projects", `{"id":"x","owner":"y"}`, 400, `"param":"owner"`},
		{"POST", "/v1/admin/projects", `{"id":"x"} {}`, 400, `nothing after it`},
		{"PATCH", "/v1/admin/projects/acme", `{"name":"A"}`, 409, `declared in the configuration`},
		{"PATCH", "/v1/admin/projects/nope", `{"name":"A"}`, 404, `no such project`},
		{"PATCH", "/v1/admin/projects/beta", `{"id":"gamma"}`, 400, `"param":"id"`},
		{"GET", "/v1/admin/projects/nope", ``, 404, `no such project`},
		{"DELETE", "/v1/admin/projects/acme", ``, 409, `declared in the configuration`},
		// The configuration's keys are listed and read, never changed.
		{"GET", "/v1/admin/keys/key_all", ``, 200, `"source":"config"`},
		{"PATCH", "/v1/admin/keys/key_all", `{"name":"x"}`, 409, `a configuration key`},
		{"DELETE", "/v1/admin/keys/key_hermes", ``, 409, `a configuration key`},
	} {
		resp, body := e.do(t, tt.method, tt.path, adminToken, tt.body)
		if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s %s: %d %s", tt.method, tt.path, tt.body, resp.StatusCode, body)
		}
	}
	_, body = e.do(t, "GET", "/v1/admin/projects", adminToken, "")
	var list struct {
		Data []struct{ ID, Source string }
	}
	json.Unmarshal(body, &list)
	if len(list.Data) != 3 || list.Data[0].ID != "acme" || list.Data[0].Source != "config" || list.Data[1].ID != "beta" {
		t.Errorf("list: %s", body)
	}
	k := e.createKey(t, `{"tier":"pro","project":"beta"}`)
	for i, want := range []int{200, 200, 429} {
		if resp := e.post(t, "/v1/chat", k.Secret, hi+`}`); resp.StatusCode != want {
			t.Fatalf("request %d: %d, want %d", i, resp.StatusCode, want)
		} else if want == 429 && !strings.Contains(readError(t, resp).Error.Message, "project beta: Rate limit reached") {
			t.Error("the refusal does not name the project")
		}
	}
	if resp, body := e.do(t, "PATCH", "/v1/admin/projects/beta", adminToken, `{"limits":{"rpm":null}}`); resp.StatusCode != 200 {
		t.Fatalf("lift: %d %s", resp.StatusCode, body)
	}
	if resp := e.post(t, "/v1/chat", k.Secret, hi+`}`); resp.StatusCode != 200 {
		t.Errorf("after the limit was lifted: %d", resp.StatusCode)
	}
	if resp, body := e.do(t, "DELETE", "/v1/admin/projects/beta", adminToken, ""); resp.StatusCode != 409 || !strings.Contains(string(body), k.ID) {
		t.Errorf("delete with a key: %d %s", resp.StatusCode, body)
	}
	e.do(t, "DELETE", "/v1/admin/keys/"+k.ID, adminToken, "")
	if resp, body := e.do(t, "DELETE", "/v1/admin/projects/beta", adminToken, ""); resp.StatusCode != 200 {
		t.Errorf("delete: %d %s", resp.StatusCode, body)
	}
	if resp, _ := e.do(t, "GET", "/v1/admin/projects/beta", adminToken, ""); resp.StatusCode != 404 {
		t.Errorf("deleted, then read: %d", resp.StatusCode)
	}
	if resp, _ := e.do(t, "GET", "/v1/admin/projects", k.Secret, ""); resp.StatusCode != 401 {
		t.Errorf("an API key listed projects: %d", resp.StatusCode)
	}
}

// TestUsageByProject: the ledger keeps each request's project, so the
// admin usage filters by it and the organization reports group by it.
func TestUsageByProject(t *testing.T) {
	e := newEnv(t, sim.Config{ReplyTokens: 4}, withAdmin(t), withLedger(postgresLedger(t)),
		withProject("acme", quota.Limits{}, keyHermes))
	for _, key := range []string{keyAll, keyHermes, keyHermes} {
		if resp := e.post(t, "/v1/chat", key, hi+`}`); resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
	}
	type totals struct {
		TotalTokens int64   `json:"total_tokens"`
		Project     *string `json:"project"`
	}
	var u struct {
		TotalTokens int64             `json:"total_tokens"`
		Keys        map[string]totals `json:"keys"`
		Projects    map[string]totals `json:"projects"`
	}
	poll.Until(t, "three records", func() bool {
		_, body := e.do(t, "GET", "/v1/admin/usage", adminToken, "")
		json.Unmarshal(body, &u)
		return u.TotalTokens == 3*(4+4)
	})
	if u.Projects["acme"].TotalTokens != 16 || u.Keys["key_hermes"].Project == nil || *u.Keys["key_hermes"].Project != "acme" || u.Keys["key_all"].Project != nil {
		t.Errorf("by project: %+v", u)
	}
	_, body := e.do(t, "GET", "/v1/admin/usage?project=acme", adminToken, "")
	u.Keys = nil
	json.Unmarshal(body, &u)
	if u.TotalTokens != 16 || len(u.Keys) != 1 {
		t.Errorf("project=acme: %s", body)
	}
	_, body = e.do(t, "GET", "/v1/admin/usage?project=acme&format=csv", adminToken, "")
	lines, _ := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if len(lines) != 2 || lines[0][9] != "project_id" || lines[1][9] != "acme" || lines[0][13] != "project_name" || len(lines[1]) != 14 {
		t.Errorf("CSV: %q", lines)
	}
	start := time.Now().UTC().Truncate(24 * time.Hour).Unix()
	_, body = e.do(t, "GET", fmt.Sprintf("/v1/organization/usage/completions?start_time=%d&group_by=project_id", start), adminToken, "")
	var page struct {
		Data []struct {
			Results []struct {
				ProjectID   *string `json:"project_id"`
				InputTokens int64   `json:"input_tokens"`
				Requests    int64   `json:"num_model_requests"`
			}
		}
	}
	json.Unmarshal(body, &page)
	got := map[string]int64{}
	for _, b := range page.Data {
		for _, r := range b.Results {
			p := "none"
			if r.ProjectID != nil {
				p = *r.ProjectID
			}
			got[p] += r.Requests
		}
	}
	if got["acme"] != 2 || got["none"] != 1 {
		t.Errorf("grouped by project: %v (%s)", got, body)
	}
	_, body = e.do(t, "GET", fmt.Sprintf("/v1/organization/costs?start_time=%d&group_by=project_id&project_ids=acme", start), adminToken, "")
	if !strings.Contains(string(body), `"project_id":"acme"`) || strings.Contains(string(body), `"project_id":null`) {
		t.Errorf("costs of acme: %s", body)
	}
}
