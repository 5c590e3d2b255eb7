package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/obol/obol/alerts"
	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/loadtest/sim"
	"github.com/obol/obol/quota"
)

// TestAdminAlerts: GET /v1/admin/alerts lists the deliveries with their
// state, attempts and last error, filtered by subject, period and state;
// POST /v1/admin/alerts/{id}/redeliver sends one again; a gateway without
// webhooks answers 501.
func TestAdminAlerts(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			http.Error(w, "down", http.StatusBadGateway)
		}
	}))
	defer rcv.Close()
	st, err := alerts.OpenEmbedded(bolttest.Open(t))
	if err != nil {
		t.Fatal(err)
	}
	n := alerts.New(alerts.Options{Webhooks: []alerts.Webhook{{URL: rcv.URL, Secret: "whsec-0123456789abcdef"}}, Store: st,
		Retry: 5 * time.Millisecond, MaxRetry: 10 * time.Millisecond, RetryFor: 100 * time.Millisecond, Poll: 10 * time.Millisecond})
	t.Cleanup(func() { n.Close(t.Context()) })
	e := newEnv(t, sim.Config{}, withAdmin(t), func(c *envConfig) { c.Alerts = n })
	n.Observe(quota.Spend{Key: "key_all", Month: "202612", Before: 0, After: 900, Budget: 1000, Alerts: []float64{0.5, 0.8}})
	type list struct {
		Data []struct {
			ID        string            `json:"id"`
			Subject   map[string]string `json:"subject"`
			State     string            `json:"state"`
			Attempts  int               `json:"attempts"`
			LastError *string           `json:"last_error"`
			Threshold float64           `json:"threshold"`
		} `json:"data"`
	}
	var l list
	poll.Until(t, "both deliveries failed", func() bool {
		_, b := e.do(t, "GET", "/v1/admin/alerts?key=key_all&period=2026-12&state=failed", adminToken, "")
		l = list{}
		json.Unmarshal(b, &l)
		return len(l.Data) == 2
	})
	d := l.Data[0]
	if d.Subject["key"] != "key_all" || d.Attempts < 1 || d.LastError == nil || !strings.Contains(*d.LastError, "502") {
		t.Errorf("a failed delivery: %+v", d)
	}
	if _, b := e.do(t, "GET", "/v1/admin/alerts?project=other", adminToken, ""); strings.Contains(string(b), "evt_") {
		t.Errorf("another project's: %s", b)
	}
	fail.Store(false)
	resp, b := e.do(t, "POST", "/v1/admin/alerts/"+d.ID+"/redeliver", adminToken, "")
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"state":"pending"`) {
		t.Fatalf("redeliver: %d %s", resp.StatusCode, b)
	}
	poll.Until(t, "the redelivered one delivered", func() bool {
		_, b := e.do(t, "GET", "/v1/admin/alerts?state=delivered", adminToken, "")
		return strings.Contains(string(b), d.ID)
	})
	for path, status := range map[string]int{
		"/v1/admin/alerts/evt_none/redeliver": 404,
	} {
		if resp, b := e.do(t, "POST", path, adminToken, ""); resp.StatusCode != status {
			t.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
		}
	}
	for path, status := range map[string]int{"/v1/admin/alerts?subject=x": 400, "/v1/admin/alerts?period=12-2026": 400, "/v1/admin/alerts?state=lost": 400} {
		if resp, b := e.do(t, "GET", path, adminToken, ""); resp.StatusCode != status {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, b)
		}
	}
	if resp, _ := e.do(t, "GET", "/v1/admin/alerts", keyAll, ""); resp.StatusCode != 401 && resp.StatusCode != 403 {
		t.Errorf("an API key on the alerts: %d", resp.StatusCode)
	}
	none := newEnv(t, sim.Config{}, withAdmin(t))
	if resp, _ := none.do(t, "GET", "/v1/admin/alerts", adminToken, ""); resp.StatusCode != 501 {
		t.Errorf("no webhooks: %d", resp.StatusCode)
	}
}
