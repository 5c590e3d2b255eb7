package gateway_test

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// chromiumPath is the browser the page tests drive, or the test is
// skipped (failed under CI) without one.
func chromiumPath(t *testing.T) string {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("Chromium is missing (.ci/run installs Debian's chromium): %v", err)
		}
		t.Skipf("Chromium is missing (apt-get install chromium): %v", err)
	}
	return chromium
}

// TestDashboardPage: the page and its files carry a strict CSP, and
// unknown files are JSON 404s.
func TestDashboardPage(t *testing.T) {
	e := newEnv(t, sim.Config{})
	for _, path := range []string{"/dashboard", "/dashboard/assets/app.js", "/dashboard/assets/app.css", "/dashboard/assets/icon.svg"} {
		resp := e.get(t, path, "")
		csp := resp.Header.Get("Content-Security-Policy")
		if resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") ||
			resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: %d, CSP %q", path, resp.StatusCode, csp)
		}
	}
	body, _ := io.ReadAll(e.get(t, "/dashboard", "").Body)
	if strings.Contains(string(body), "<script>") || strings.Contains(string(body), "http://") || strings.Contains(string(body), "https://") {
		t.Error("the page has an inline script or a link to another origin")
	}
	for _, path := range []string{"/dashboard/assets/index.html", "/dashboard/assets/nope.js", "/dashboard/assets/..%2fdashboard.go"} {
		if resp := e.get(t, path, ""); resp.StatusCode != 404 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
			t.Errorf("%s: %d %s", path, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	}
	if resp := e.get(t, "/dashboard/session", "sk-wrong"); resp.StatusCode != 401 {
		t.Errorf("a wrong credential's session: %d", resp.StatusCode)
	}
}

// TestDashboardInBrowser: after known traffic, headless Chromium signs in
// with an API key (the page's month cost is /v1/usage's total_cost) and
// with the admin token (every key, a key named with HTML shown as text,
// the CSV download equal to the API's CSV), with no console error and no
// request to another origin. OBOL_SCREENSHOTS=dir keeps its screenshots.
func TestDashboardInBrowser(t *testing.T) {
	chromium := chromiumPath(t)
	e := newEnv(t, sim.Config{ReplyTokens: 7}, withAdmin(t), withPrices(money.Prices{hermesPrice}),
		withProject("acme", quota.Limits{Budget: 30_000_000}, keyAll))
	const htmlName = `<img src=x onerror=alert(1)>`
	k := e.createKey(t, `{"tier":"pro","name":"`+strings.ReplaceAll(htmlName, `"`, `\"`)+`","budget":{"monthly":1}}`)
	e.do(t, "PATCH", "/v1/admin/keys/"+k.ID, adminToken, `{"budget":{"monthly":0.0001,"alert_at":[0.1,0.9]}}`)
	for i, key := range []string{keyAll, keyAll, keyHermes, k.Secret} {
		resp := e.post(t, "/v1/chat", key, small)
		// The project's budget fits one request's hold: the second waits,
		// as an SDK would, for the first to settle (just after its answer).
		for tries := 0; resp.StatusCode == 429 && tries < 100; tries++ {
			time.Sleep(20 * time.Millisecond)
			resp = e.post(t, "/v1/chat", key, small)
		}
		if resp.StatusCode != 200 {
			t.Fatalf("traffic %d: %d %+v", i, resp.StatusCode, readError(t, resp).Error)
		}
	}
	e.waitRecorded(t, keyAll, 2)
	e.waitRecorded(t, keyHermes, 1)
	e.waitRecorded(t, k.Secret, 1) // the admin total and CSV below count it
	raw, _ := io.ReadAll(e.get(t, "/v1/usage", keyAll).Body)
	var u struct {
		TotalCost json.Number `json:"total_cost"`
	}
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	dec.Decode(&u)
	_, all := e.do(t, "GET", "/v1/admin/usage", adminToken, "")
	var au struct {
		TotalCost json.Number `json:"total_cost"`
	}
	dec = json.NewDecoder(strings.NewReader(string(all)))
	dec.UseNumber()
	dec.Decode(&au)
	_, csv := e.do(t, "GET", "/v1/admin/usage?format=csv&period="+time.Now().UTC().Format("2006-01"), adminToken, "")
	csvFile := filepath.Join(t.TempDir(), "want.csv")
	os.WriteFile(csvFile, csv, 0o600)
	// A request to find in the Requests tab, and its cost in the log.
	var log struct {
		Data []struct {
			RequestID string      `json:"request_id"`
			Cost      json.Number `json:"cost"`
		} `json:"data"`
	}
	_, page := e.do(t, "GET", "/v1/admin/requests?key=key_hermes", adminToken, "")
	dec = json.NewDecoder(strings.NewReader(string(page)))
	dec.UseNumber()
	if dec.Decode(&log); len(log.Data) != 1 {
		t.Fatalf("the request log of key_hermes: %s", page)
	}
	shots := os.Getenv("OBOL_SCREENSHOTS")
	if shots != "" {
		shots, _ = filepath.Abs(shots)
	}
	runNode(t, "dashboard.mjs", "playwright-core", "CHROMIUM="+chromium, "OBOL_URL="+e.gw.URL,
		"OBOL_KEY="+keyAll, "OBOL_ADMIN="+adminToken, "OBOL_WANT_COST="+u.TotalCost.String(), "OBOL_WANT_TOTAL="+au.TotalCost.String(),
		"OBOL_WANT_CSV="+csvFile, "OBOL_WANT_KEYS=key_all,key_hermes,"+k.ID, "OBOL_HTML_NAME="+htmlName, "OBOL_SCREENSHOTS="+shots,
		"OBOL_RISK_KEY="+k.ID, "OBOL_REQUEST_ID="+log.Data[0].RequestID, "OBOL_REQUEST_COST="+log.Data[0].Cost.String())
}
