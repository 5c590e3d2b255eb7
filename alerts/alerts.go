// Package alerts sends budget alerts: when a key's or a project's spend
// this month crosses one of its budget's thresholds, a signed event is
// POSTed to every configured webhook, retried with backoff until a 2xx.
// Each (subject, month, threshold) is claimed in the shared store before
// it is sent, so that one replica sends it, once, however many saw it.
package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// Webhook is a receiver of events and the secret its signatures use.
type Webhook struct {
	URL    string
	Secret string
}

// Claims record which alerts were sent: PostgreSQL with several
// replicas, the embedded file with one.
type Claims interface {
	// Claim reserves an alert for this replica to send: false if it was
	// claimed before, here or on another replica.
	Claim(ctx context.Context, a Alert) (bool, error)
	// Sent records an alert's outcome: delivered to every webhook or not.
	Sent(ctx context.Context, a Alert, delivered bool, attempts int) error
	// Abandoned claims for this replica at most limit alerts claimed
	// before cutoff whose claimant never recorded an outcome (it died).
	Abandoned(ctx context.Context, cutoff time.Time, limit int) ([]Alert, error)
}

// Alert is one threshold of one budget crossed in one month.
type Alert struct {
	ID        string      `json:"id"` // evt_…, the same for the same subject, month and threshold
	Key       string      `json:"key,omitempty"`
	Project   string      `json:"project,omitempty"`
	Period    string      `json:"period"` // YYYY-MM
	Threshold float64     `json:"threshold"`
	Spent     usage.Money `json:"spent"`
	Budget    usage.Money `json:"budget"`
	Created   time.Time   `json:"created"`
}

// Subject is "project:<id>" or "key:<id>".
func (a Alert) Subject() string {
	if a.Project != "" {
		return "project:" + a.Project
	}
	return "key:" + a.Key
}

// ThresholdText is the threshold as its claim records it.
func (a Alert) ThresholdText() string { return strconv.FormatFloat(a.Threshold, 'f', -1, 64) }

// eventID is the same for every replica that sees the same crossing, so
// that a receiver can tell a repeat too.
func eventID(subject, period, threshold string) string {
	h := sha256.Sum256([]byte(subject + "\x00" + period + "\x00" + threshold))
	return "evt_" + hex.EncodeToString(h[:12])
}

// Options configure a Notifier.
type Options struct {
	Webhooks []Webhook
	Claims   Claims
	// Attempts bounds the tries of one delivery; 0 means 8. Retry is the
	// first wait, doubled each time up to MaxRetry; 0 means 1 s and 60 s.
	Attempts        int
	Retry, MaxRetry time.Duration
	// Timeout bounds one POST; 0 means 10 s.
	Timeout time.Duration
	// Abandoned is how old an unfinished claim must be before another
	// replica sends it (its claimant died): longer than all the attempts
	// take. 0 means 10 minutes; the claims are looked at every tenth of it.
	Abandoned time.Duration
	Client    *http.Client
	Log       *slog.Logger
	Meter     metric.Meter
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Notifier turns spend reports into alerts and delivers them in the
// background. Observe never blocks a settlement.
type Notifier struct {
	opt  Options
	mu   sync.Mutex
	seen map[string]bool // claims tried by this replica, this month
	open bool
	wg   sync.WaitGroup
	stop chan struct{}
	sent metric.Int64Counter
}

// New returns a Notifier; with no webhooks it sends nothing.
func New(o Options) *Notifier {
	if o.Attempts <= 0 {
		o.Attempts = 8
	}
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = time.Minute
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: o.Timeout}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Meter == nil {
		o.Meter = otel.Meter("github.com/obol/obol/alerts")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Abandoned <= 0 {
		o.Abandoned = 10 * time.Minute
	}
	n := &Notifier{opt: o, seen: map[string]bool{}, open: true, stop: make(chan struct{})}
	n.sent, _ = o.Meter.Int64Counter("obol.alerts.deliveries",
		metric.WithDescription("Budget alert deliveries to webhooks, by outcome: delivered, retried, failed"))
	if len(o.Webhooks) > 0 {
		n.wg.Add(1)
		go n.sweep()
	}
	return n
}

// sweep sends, now and then, the alerts whose claimant died before it
// finished: a claim protects against two replicas sending at once, and
// this against none sending at all.
func (n *Notifier) sweep() {
	defer n.wg.Done()
	t := time.NewTicker(n.opt.Abandoned / 10)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
		as, err := n.opt.Claims.Abandoned(ctx, n.opt.Now().Add(-n.opt.Abandoned), 100)
		cancel()
		if err != nil {
			n.opt.Log.Warn("abandoned budget alerts not read", "err", err)
			continue
		}
		for _, a := range as {
			n.opt.Log.Info("budget alert abandoned by its claimant; sending it", "event_id", a.ID, "subject", a.Subject())
			n.wg.Add(1)
			go n.deliverAll(a)
		}
	}
}

// Observe reports a move of spend; every threshold at or past which the
// spend now stands, not claimed yet by this replica, is claimed and sent.
func (n *Notifier) Observe(sp quota.Spend) {
	if len(n.opt.Webhooks) == 0 || sp.Budget <= 0 {
		return
	}
	period := sp.Month[:4] + "-" + sp.Month[4:]
	for _, th := range sp.Alerts {
		if float64(sp.After) < math.Ceil(th*float64(sp.Budget)) {
			continue
		}
		a := Alert{Key: sp.Key, Project: sp.Project, Period: period, Threshold: th,
			Spent: usage.Money(sp.After), Budget: usage.Money(sp.Budget), Created: n.opt.Now().UTC()}
		a.ID = eventID(a.Subject(), period, a.ThresholdText())
		if !n.first(a) {
			continue
		}
		n.wg.Add(1)
		go n.send(a)
	}
}

// first reports whether this replica has not tried the alert's claim
// yet, and notes it; false after Close.
func (n *Notifier) first(a Alert) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.open || n.seen[a.ID] {
		return false
	}
	if len(n.seen) > 100_000 { // months turn; a claim forgotten is asked of the store again
		n.seen = map[string]bool{}
	}
	n.seen[a.ID] = true
	return true
}

// send claims the alert and delivers it to every webhook.
func (n *Notifier) send(a Alert) {
	defer n.wg.Done()
	ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
	ok, err := n.opt.Claims.Claim(ctx, a)
	cancel()
	if err != nil {
		n.mu.Lock()
		delete(n.seen, a.ID) // ask again at the next settlement
		n.mu.Unlock()
		n.opt.Log.Warn("budget alert not claimed; trying again at the next settlement", "subject", a.Subject(),
			"threshold", a.Threshold, "err", err)
		return
	}
	if !ok {
		return
	}
	n.wg.Add(1)
	n.deliverAll(a)
}

// deliverAll sends a claimed alert to every webhook and records the
// outcome.
func (n *Notifier) deliverAll(a Alert) {
	defer n.wg.Done()
	delivered, attempts := true, 0
	for _, w := range n.opt.Webhooks {
		ok, tries := n.deliver(w, a)
		delivered, attempts = delivered && ok, max(attempts, tries)
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
	defer cancel()
	if err := n.opt.Claims.Sent(ctx, a, delivered, attempts); err != nil {
		n.opt.Log.Warn("budget alert outcome not recorded", "event_id", a.ID, "err", err)
	}
}

// Close stops new alerts and waits, until ctx ends, for those being
// delivered.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.open {
		n.open = false
		close(n.stop)
	}
	n.mu.Unlock()
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("budget alerts still being delivered: %w", ctx.Err())
	}
}

func (n *Notifier) count(outcome string) {
	n.sent.Add(context.Background(), 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}
