package alerts_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
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
		if alerts.Verify(secret, req.Header.Get("X-Obol-Signature"), body, time.Now(), time.Minute) != nil || req.Header.Get("Content-Type") != "application/json" {
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

func (r *receiver) setFailures(n int) {
	r.mu.Lock()
	r.failures = n
	r.mu.Unlock()
}

func (r *receiver) counts() (tries, got, badSig int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tries, len(r.got), r.badSig
}

func forEachStore(t *testing.T, f func(t *testing.T, store func() alerts.Store)) {
	t.Run("postgres", func(t *testing.T) {
		pool, _ := pgtest.Shared(t)
		f(t, func() alerts.Store { return alerts.NewPostgres(pool) })
	})
	t.Run("embedded", func(t *testing.T) {
		st, err := alerts.OpenEmbedded(bolttest.Open(t))
		if err != nil {
			t.Fatal(err)
		}
		f(t, func() alerts.Store { return st })
	})
}

// options are a test notifier's: quick retries and polls.
func options(st alerts.Store, urls ...string) alerts.Options {
	o := alerts.Options{Store: st, Retry: 5 * time.Millisecond, MaxRetry: 20 * time.Millisecond, Poll: 10 * time.Millisecond}
	for _, u := range urls {
		o.Webhooks = append(o.Webhooks, alerts.Webhook{URL: u, Secret: secret})
	}
	return o
}

func start(t *testing.T, o alerts.Options) *alerts.Notifier {
	n := alerts.New(o)
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

var spend = quota.Spend{Project: "acme", Month: "202611", Before: 400, After: 850, Budget: 1000, Alerts: []float64{0.5, 0.8, 1}}

// delivery waits for the one delivery of a store in state, and returns it.
func delivery(t *testing.T, st alerts.Store, state string) alerts.Delivery {
	t.Helper()
	var d alerts.Delivery
	poll.Until(t, "a delivery "+state, func() bool {
		ds, err := st.List(context.Background(), alerts.Filter{Limit: 10})
		if err != nil || len(ds) != 1 {
			return false
		}
		d = ds[0]
		return d.State == state
	})
	return d
}

// TestAlertsOnce: the thresholds crossed arrive, signed, once each, with
// the documented body; seen again, on this replica or another, they are
// not sent again; the next threshold is sent when it is crossed.
func TestAlertsOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, store func() alerts.Store) {
		rcv := newReceiver(t, 0)
		a, b := start(t, options(store(), rcv.URL)), start(t, options(store(), rcv.URL))
		a.Observe(spend)
		poll.Until(t, "two alerts", func() bool { return len(rcv.events()) == 2 })
		a.Observe(spend)
		b.Observe(spend)
		next := spend
		next.Before, next.After = 850, 1001
		b.Observe(next)
		poll.Until(t, "the third alert", func() bool { return len(rcv.events()) == 3 })
		time.Sleep(50 * time.Millisecond) // more polls: none sends one again
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

// TestAlertRetriedUntilTheReceiverIsBack: a receiver that fails many
// times in a row (more than the eight tries there used to be) gets the
// alert once it answers, counted and recorded; one that never answers
// within the retry window is kept as failed, with its last error, and
// redelivered on demand once it is back.
func TestAlertRetriedUntilTheReceiverIsBack(t *testing.T) {
	forEachStore(t, func(t *testing.T, store func() alerts.Store) {
		rcv := newReceiver(t, 20)
		reader := sdkmetric.NewManualReader()
		o := options(store(), rcv.URL)
		o.Meter = sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)).Meter("test")
		n := start(t, o)
		one := spend
		one.Alerts = []float64{0.8}
		n.Observe(one)
		d := delivery(t, o.Store, alerts.Delivered)
		tries, got, _ := rcv.counts()
		if tries != 21 || got != 1 || d.Attempts != 21 || d.DeliveredAt == nil || metrictest.Sum(t, reader, "obol.alerts.deliveries") != 21 {
			t.Errorf("%d tries, %d got; recorded %+v", tries, got, d)
		}
		n.Close(context.Background())

		down := newReceiver(t, 1<<30)
		st := store()
		o = options(st, down.URL)
		o.RetryFor = 150 * time.Millisecond
		n = start(t, o)
		two := one
		two.Project = "beta"
		n.Observe(two)
		var failed alerts.Delivery
		poll.Until(t, "the delivery failed", func() bool {
			ds, _ := st.List(context.Background(), alerts.Filter{Subject: "project:beta", Limit: 10})
			if len(ds) == 1 {
				failed = ds[0]
			}
			return failed.State == alerts.Failed
		})
		if failed.Attempts < 2 || failed.FailedAt == nil || !strings.Contains(failed.LastError, "503") {
			t.Errorf("failed delivery %+v", failed)
		}
		down.setFailures(0)
		if _, err := n.Redeliver(context.Background(), failed.ID); err != nil {
			t.Fatal(err)
		}
		poll.Until(t, "the redelivered alert", func() bool { _, got, _ := down.counts(); return got == 1 })
		if _, err := n.Redeliver(context.Background(), "evt_none"); !errors.Is(err, alerts.ErrNotFound) {
			t.Errorf("an unknown delivery: %v", err)
		}
	})
}

// TestAlertToEveryWebhookOnce: with two webhooks, one failing for a
// while, each gets the alert exactly once.
func TestAlertToEveryWebhookOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, store func() alerts.Store) {
		up, flaky := newReceiver(t, 0), newReceiver(t, 5)
		o := options(store(), up.URL, flaky.URL)
		n := start(t, o)
		one := spend
		one.Alerts = []float64{0.5}
		n.Observe(one)
		delivery(t, o.Store, alerts.Delivered)
		if _, got, _ := up.counts(); got != 1 {
			t.Errorf("the webhook that answered got it %d times", got)
		}
		if tries, got, _ := flaky.counts(); got != 1 || tries != 6 {
			t.Errorf("the flaky one: %d tries, got it %d times", tries, got)
		}
	})
}

// TestAlertRace: three replicas seeing the same crossing at once send
// it once.
func TestAlertRace(t *testing.T) {
	pool, _ := pgtest.Shared(t)
	rcv := newReceiver(t, 0)
	var ns []*alerts.Notifier
	for i := 0; i < 3; i++ {
		ns = append(ns, start(t, options(alerts.NewPostgres(pool), rcv.URL)))
	}
	var wg sync.WaitGroup
	for _, n := range ns {
		wg.Add(1)
		go func() { defer wg.Done(); n.Observe(spend) }()
	}
	wg.Wait()
	poll.Until(t, "two alerts", func() bool { return len(rcv.events()) == 2 })
	time.Sleep(50 * time.Millisecond)
	for _, n := range ns {
		n.Close(context.Background())
	}
	if evs := rcv.events(); len(evs) != 2 {
		t.Errorf("%d events, want 2 (0.5 and 0.8)", len(evs))
	}
}

// TestLeasedAlertOfADeadReplica: a delivery leased by a replica that
// died before it tried is sent by another, once, when the lease ends.
func TestLeasedAlertOfADeadReplica(t *testing.T) {
	forEachStore(t, func(t *testing.T, store func() alerts.Store) {
		rcv := newReceiver(t, 0)
		dead := store()
		a := alerts.Alert{ID: "evt_abandoned", Project: "acme", Period: "2026-11", Threshold: 0.5, Spent: 600, Budget: 1000,
			Created: time.Now().UTC()}
		if ok, err := dead.Claim(context.Background(), a); !ok || err != nil {
			t.Fatalf("claim: %v %v", ok, err)
		}
		now := time.Now()
		if ds, err := dead.Due(context.Background(), now, now.Add(200*time.Millisecond), 10); err != nil || len(ds) != 1 {
			t.Fatalf("leased by the dead replica: %v %v", ds, err)
		}
		for range 2 {
			start(t, options(store(), rcv.URL))
		}
		poll.Until(t, "the abandoned alert", func() bool { return len(rcv.events()) == 1 })
		time.Sleep(100 * time.Millisecond) // more polls: none sends it again
		evs := rcv.events()
		if len(evs) != 1 || evs[0]["id"] != "evt_abandoned" || evs[0]["spent"].(float64) != 6e-10 || rcv.badSig != 0 {
			t.Errorf("events %v", evs)
		}
	})
}

// TestAlertRecordedWhenTheStoreIsBack: a threshold crossed while
// PostgreSQL is stopped is recorded and sent once it is started again,
// with no later settlement (a spent budget has none).
func TestAlertRecordedWhenTheStoreIsBack(t *testing.T) {
	srv := pgtest.Start(t)
	pool := srv.Migrated(t)
	rcv := newReceiver(t, 0)
	st := alerts.NewPostgres(pool)
	n := start(t, options(st, rcv.URL))
	srv.Stop()
	one := spend
	one.Alerts = []float64{1}
	one.After = 1000
	n.Observe(one)
	time.Sleep(100 * time.Millisecond)
	if len(rcv.events()) != 0 {
		t.Fatal("sent without being recorded")
	}
	srv.Restart()
	poll.Until(t, "the alert, once the store is back", func() bool { return len(rcv.events()) == 1 })
	delivery(t, st, alerts.Delivered)
}

// TestSignature: the signature carries a timestamp and verifies the body
// at it; a changed body, another secret or an old timestamp do not.
func TestSignature(t *testing.T) {
	body := []byte(`{"id":"evt_x"}`)
	at := time.Unix(1_800_000_000, 0)
	h := alerts.Sign(secret, at, body)
	if !strings.HasPrefix(h, "t=1800000000,v1=") {
		t.Fatalf("header %q", h)
	}
	for _, tt := range []struct {
		name, secret string
		body         []byte
		now          time.Time
		ok           bool
	}{
		{"as sent", secret, body, at.Add(time.Second), true},
		{"another body", secret, []byte(`{"id":"evt_y"}`), at, false},
		{"another secret", "whsec-other-0123456789", body, at, false},
		{"replayed an hour later", secret, body, at.Add(time.Hour), false},
	} {
		if err := alerts.Verify(tt.secret, h, tt.body, tt.now, 5*time.Minute); (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

// TestWebhooksReplaced: a notifier started without webhooks sends once it
// is given one (a reload), and a receiver added later gets the crossings
// from then on.
func TestWebhooksReplaced(t *testing.T) {
	forEachStore(t, func(t *testing.T, store func() alerts.Store) {
		first, second := newReceiver(t, 0), newReceiver(t, 0)
		o := options(store())
		n := start(t, o)
		one := spend
		one.Alerts = []float64{0.5}
		n.Observe(one) // no receiver yet: not recorded
		n.SetWebhooks(options(nil, first.URL).Webhooks)
		two := spend
		two.Project, two.Alerts = "beta", []float64{0.5}
		n.Observe(two)
		delivery(t, o.Store, alerts.Delivered)
		if _, got, _ := first.counts(); got != 1 {
			t.Errorf("the webhook given by a reload got %d alerts", got)
		}
		n.SetWebhooks(options(nil, first.URL, second.URL).Webhooks)
		three := spend
		three.Project, three.Alerts = "gamma", []float64{0.5}
		n.Observe(three)
		poll.Until(t, "the added receiver to get the next alert", func() bool { _, got, _ := second.counts(); return got == 1 })
		if _, got, _ := first.counts(); got != 2 {
			t.Errorf("the first receiver got %d alerts, want 2", got)
		}
	})
}
