package alerts_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/obol/obol/alerts"
	"github.com/obol/obol/internal/bolttest"
	"github.com/obol/obol/internal/metrictest"
	"github.com/obol/obol/internal/pgtest"
	"github.com/obol/obol/internal/poll"
	"github.com/obol/obol/quota"
)

const secret = "whsec-test-0123456789"

// receiver is a real HTTP webhook receiver that checks signatures and
// fails the first failures deliveries.
type receiver struct {
	*httptest.Server
	mu       sync.Mutex
	failures int
	tries    int
	got      []map[string]any
	ids      []string
	badSig   int
}

func newReceiver(t *testing.T, failures int) *receiver {
	r := &receiver{failures: failures}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.tries++
		if req.Header.Get("X-Obol-Signature") != alerts.Sign(secret, body) || req.Header.Get("Content-Type") != "application/json" {
			r.badSig++
		}
		if r.failures > 0 {
			r.failures--
			http.Error(w, "not now", http.StatusServiceUnavailable)
			return
		}
		var ev map[string]any
		json.Unmarshal(body, &ev)
		r.got = append(r.got, ev)
		r.ids = append(r.ids, req.Header.Get("X-Obol-Event-Id"))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) events() []map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]map[string]any(nil), r.got...)
}

func forEachClaims(t *testing.T, f func(t *testing.T, claims func() alerts.Claims)) {
	t.Run("postgres", func(t *testing.T) {
		pool, _ := pgtest.Shared(t)
		f(t, func() alerts.Claims { return alerts.NewPostgres(pool) })
	})
	t.Run("embedded", func(t *testing.T) {
		c, err := alerts.OpenEmbedded(bolttest.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		f(t, func() alerts.Claims { return c })
	})
}

func notifier(t *testing.T, claims alerts.Claims, url string, reader *sdkmetric.ManualReader) *alerts.Notifier {
	o := alerts.Options{Webhooks: []alerts.Webhook{{URL: url, Secret: secret}}, Claims: claims,
		Retry: 10 * time.Millisecond, Attempts: 4}
	if reader != nil {
		o.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
	}
	n := alerts.New(o)
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

var spend = quota.Spend{Project: "acme", Month: "202611", Before: 400, After: 850, Budget: 1000, Alerts: []float64{0.5, 0.8, 1}}

// TestAlertsOnce: the thresholds crossed arrive, signed, once each, with
// the documented body; seen again, on this replica or another, they are
// not sent again; the next threshold is sent when it is crossed.
func TestAlertsOnce(t *testing.T) {
	forEachClaims(t, func(t *testing.T, claims func() alerts.Claims) {
		rcv := newReceiver(t, 0)
		a, b := notifier(t, claims(), rcv.URL, nil), notifier(t, claims(), rcv.URL, nil)
		a.Observe(spend)
		poll.Until(t, "two alerts", func() bool { return len(rcv.events()) == 2 })
		a.Observe(spend)
		b.Observe(spend)
		next := spend
		next.Before, next.After = 850, 1001
		b.Observe(next)
		poll.Until(t, "the third alert", func() bool { return len(rcv.events()) == 3 })
		a.Close(context.Background())
		b.Close(context.Background())
		evs := rcv.events()
		if len(evs) != 3 || rcv.badSig != 0 {
			t.Fatalf("%d events, %d badly signed: %v", len(evs), rcv.badSig, evs)
		}
		ths := map[float64]map[string]any{}
		for i, ev := range evs {
			ths[ev["threshold"].(float64)] = ev
			if ev["id"] != rcv.ids[i] {
				t.Errorf("X-Obol-Event-Id %s, body id %v", rcv.ids[i], ev["id"])
			}
		}
		e := ths[0.8]
		if e["type"] != "budget.threshold" || e["subject"].(map[string]any)["project"] != "acme" || e["period"] != "2026-11" ||
			e["budget"].(float64) != 1e-9 || e["spent"].(float64) != 8.5e-10 || e["created"].(float64) <= 0 || ths[1] == nil {
			t.Errorf("event %v", e)
		}
	})
}

// TestAlertRetried: a receiver that fails twice gets the alert at the
// third attempt; one that always fails is given up on, counted.
func TestAlertRetried(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	rcv := newReceiver(t, 2)
	reader := sdkmetric.NewManualReader()
	n := notifier(t, alerts.NewPostgres(pool), rcv.URL, reader)
	one := spend
	one.Alerts = []float64{0.8}
	n.Observe(one)
	poll.Until(t, "the alert", func() bool { return len(rcv.events()) == 1 })
	n.Close(context.Background())
	if rcv.tries != 3 || metrictest.Sum(t, reader, "obol.alerts.deliveries") != 3 {
		t.Errorf("%d tries, %d counted", rcv.tries, metrictest.Sum(t, reader, "obol.alerts.deliveries"))
	}
	var attempts int
	var delivered bool
	pool.QueryRow(context.Background(), "SELECT attempts, delivered_at IS NOT NULL FROM alert_deliveries").Scan(&attempts, &delivered)
	if attempts != 3 || !delivered {
		t.Errorf("recorded %d attempts, delivered %v", attempts, delivered)
	}

	down := newReceiver(t, 1000)
	n = notifier(t, alerts.NewPostgres(pool), down.URL, nil)
	two := one
	two.Project = "beta"
	n.Observe(two)
	n.Close(context.Background())
	if down.tries != 4 {
		t.Errorf("a failing receiver was tried %d times, want 4", down.tries)
	}
	pool.QueryRow(context.Background(), "SELECT attempts, delivered_at IS NOT NULL FROM alert_deliveries WHERE subject = 'project:beta'").Scan(&attempts, &delivered)
	if attempts != 4 || delivered {
		t.Errorf("given up: recorded %d attempts, delivered %v", attempts, delivered)
	}
}

// TestAlertRace: three replicas seeing the same crossing at once send
// it once.
func TestAlertRace(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	rcv := newReceiver(t, 0)
	var ns []*alerts.Notifier
	for i := 0; i < 3; i++ {
		ns = append(ns, notifier(t, alerts.NewPostgres(pool), rcv.URL, nil))
	}
	var wg sync.WaitGroup
	for _, n := range ns {
		wg.Add(1)
		go func() { defer wg.Done(); n.Observe(spend) }()
	}
	wg.Wait()
	for _, n := range ns {
		n.Close(context.Background())
	}
	if evs := rcv.events(); len(evs) != 2 {
		t.Errorf("%d events, want 2 (0.5 and 0.8)", len(evs))
	}
}

// TestAbandonedAlertSent: an alert claimed by a replica that died before
// sending it is sent by another, once, after Abandoned.
func TestAbandonedAlertSent(t *testing.T) {
	forEachClaims(t, func(t *testing.T, claims func() alerts.Claims) {
		rcv := newReceiver(t, 0)
		dead := claims()
		a := alerts.Alert{ID: "evt_abandoned", Project: "acme", Period: "2026-11", Threshold: 0.5, Spent: 600, Budget: 1000,
			Created: time.Now().UTC()}
		if ok, err := dead.Claim(context.Background(), a); !ok || err != nil {
			t.Fatalf("claim: %v %v", ok, err)
		}
		var ns []*alerts.Notifier
		for i := 0; i < 2; i++ {
			n := alerts.New(alerts.Options{Webhooks: []alerts.Webhook{{URL: rcv.URL, Secret: secret}}, Claims: claims(),
				Retry: 10 * time.Millisecond, Abandoned: 100 * time.Millisecond})
			t.Cleanup(func() { n.Close(context.Background()) })
			ns = append(ns, n)
		}
		poll.Until(t, "the abandoned alert", func() bool { return len(rcv.events()) == 1 })
		time.Sleep(300 * time.Millisecond) // more sweeps: none sends it again
		for _, n := range ns {
			n.Close(context.Background())
		}
		evs := rcv.events()
		if len(evs) != 1 || evs[0]["id"] != "evt_abandoned" || evs[0]["spent"].(float64) != 6e-10 || rcv.badSig != 0 {
			t.Errorf("events %v", evs)
		}
	})
}
