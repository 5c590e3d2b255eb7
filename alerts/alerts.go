// Package alerts sends budget alerts: when a key's or a project's spend
// this month crosses one of its budget's thresholds, a signed event is
// POSTed to every configured webhook. Each (subject, month, threshold) is
// recorded once in the shared store before it is sent (an outbox), so
// that one replica sends it however many saw it; then any replica drives
// it: every due delivery is leased, tried, and its outcome recorded, with
// backoff, until every webhook took it or the retry window is over.
package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// Webhook is a receiver of events and the secret its signatures use.
type Webhook struct {
	URL    string
	Secret string
}

// MinSecret is the shortest webhook secret taken.
const MinSecret = 16

// Store keeps the deliveries: PostgreSQL with several replicas, the
// embedded file with one.
type Store interface {
	// Claim records an alert as pending, due now: false if it was recorded
	// before, here or on another replica.
	Claim(ctx context.Context, a Alert) (bool, error)
	// Due leases to this replica, until lease, at most limit pending
	// deliveries due at now: no other replica takes them meanwhile, and
	// one whose replica died is due again when its lease ends.
	Due(ctx context.Context, now, lease time.Time, limit int) ([]Delivery, error)
	// Record stores a delivery's state after an attempt.
	Record(ctx context.Context, d Delivery) error
	// List reads deliveries, newest first.
	List(ctx context.Context, f Filter) ([]Delivery, error)
	// Redeliver makes a delivery pending again, due now, as if new:
	// ErrNotFound if there is none.
	Redeliver(ctx context.Context, id string, now time.Time) (Delivery, error)
}

// ErrNotFound is a delivery that does not exist.
var ErrNotFound = errors.New("no such alert delivery")

// Alert is one threshold of one budget crossed in one month.
type Alert struct {
	ID        string      `json:"id"` // evt_…, the same for the same subject, month and threshold
	Key       string      `json:"key,omitempty"`
	Project   string      `json:"project,omitempty"`
	Period    string      `json:"period"` // YYYY-MM
	Threshold float64     `json:"threshold"`
	Spent     money.Money `json:"spent"`
	Budget    money.Money `json:"budget"`
	Created   time.Time   `json:"created"`
}

// Subject is "project:<id>" or "key:<id>".
func (a Alert) Subject() string {
	if a.Project != "" {
		return "project:" + a.Project
	}
	return "key:" + a.Key
}

// ThresholdText is the threshold as its record keeps it.
func (a Alert) ThresholdText() string { return strconv.FormatFloat(a.Threshold, 'f', -1, 64) }

// eventID is the same for every replica that sees the same crossing, so
// that a receiver can tell a repeat too.
func eventID(subject, period, threshold string) string {
	h := sha256.Sum256([]byte(subject + "\x00" + period + "\x00" + threshold))
	return "evt_" + hex.EncodeToString(h[:12])
}

// The states of a delivery.
const (
	Pending   = "pending"   // to be tried (again) at NextAt
	Delivered = "delivered" // every webhook answered 2xx
	Failed    = "failed"    // the retry window ended first; kept, and may be redelivered
)

// Delivery is an alert and how its delivery stands.
type Delivery struct {
	Alert
	State     string
	Attempts  int
	LastError string
	// DeliveredTo are the webhooks (by URL) that took it: not sent again.
	DeliveredTo []string
	ClaimedAt   time.Time // when it was recorded (or redelivered): the retry window's start
	NextAt      time.Time // its next attempt, while pending
	DeliveredAt *time.Time
	FailedAt    *time.Time
}

// Filter selects deliveries to list; empty fields select all.
type Filter struct {
	Subject string // project:<id> or key:<id>
	Period  string // YYYY-MM
	State   string
	Limit   int // 0 means 100
}

// Options configure a Notifier.
type Options struct {
	Webhooks []Webhook
	Store    Store
	// Retry is the first wait after a failed attempt, doubled each time up
	// to MaxRetry; 0 means 1 s and 60 s. RetryFor is how long a delivery is
	// retried before it is kept as failed; 0 means 24 hours.
	Retry, MaxRetry, RetryFor time.Duration
	// Timeout bounds one POST; 0 means 10 s.
	Timeout time.Duration
	// Poll is how often due deliveries and unrecorded crossings are looked
	// for; 0 means 1 s.
	Poll   time.Duration
	Client *http.Client
	Log    *slog.Logger
	Meter  metric.Meter
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Notifier turns spend reports into alerts and drives their delivery in
// the background. Observe never blocks a settlement.
type Notifier struct {
	opt  Options
	mu   sync.Mutex
	seen map[string]bool // recorded by this replica (or by another before)
	// unrecorded are crossings the store could not take yet: recorded
	// when it answers again, not at a later settlement (a spent budget
	// has none).
	unrecorded map[string]Alert
	open       bool
	wg         sync.WaitGroup
	stop       chan struct{}
	kick       chan struct{}
	sent       metric.Int64Counter
	// hooks are the receivers (opt.Webhooks until SetWebhooks); driving
	// is whether the delivery loop runs (it starts with the first).
	hooks   atomic.Pointer[[]Webhook]
	driving bool
}

// New returns a Notifier; with no webhooks it sends nothing.
func New(o Options) *Notifier {
	if o.Retry <= 0 {
		o.Retry = time.Second
	}
	if o.MaxRetry <= 0 {
		o.MaxRetry = time.Minute
	}
	if o.RetryFor <= 0 {
		o.RetryFor = 24 * time.Hour
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
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
	n := &Notifier{opt: o, seen: map[string]bool{}, unrecorded: map[string]Alert{}, open: true,
		stop: make(chan struct{}), kick: make(chan struct{}, 1)}
	n.sent, _ = o.Meter.Int64Counter("obol.alerts.deliveries",
		metric.WithDescription("Budget alert delivery attempts to webhooks, by outcome: delivered, retried, failed"))
	n.SetWebhooks(o.Webhooks)
	return n
}

// SetWebhooks replaces the receivers (a reload): the next attempt of
// every delivery goes to them, each receiver that took it already left
// out (by URL). With none, new crossings are not recorded.
func (n *Notifier) SetWebhooks(hooks []Webhook) {
	hooks = append([]Webhook(nil), hooks...)
	n.hooks.Store(&hooks)
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(hooks) > 0 && !n.driving && n.open {
		n.driving = true
		n.wg.Add(1)
		go n.drive()
	}
}

func (n *Notifier) webhooks() []Webhook { return *n.hooks.Load() }

// Observe reports a move of spend; every threshold at or past which the
// spend now stands, not recorded yet by this replica, is recorded for
// delivery.
func (n *Notifier) Observe(sp quota.Spend) {
	if len(n.webhooks()) == 0 || sp.Budget <= 0 {
		return
	}
	period := sp.Month[:4] + "-" + sp.Month[4:]
	for _, th := range sp.Alerts {
		if float64(sp.After) < math.Ceil(th*float64(sp.Budget)) {
			continue
		}
		a := Alert{Key: sp.Key, Project: sp.Project, Period: period, Threshold: th,
			Spent: money.Money(sp.After), Budget: money.Money(sp.Budget), Created: n.opt.Now().UTC()}
		a.ID = eventID(a.Subject(), period, a.ThresholdText())
		if n.first(a) {
			n.wg.Add(1)
			go func() { defer n.wg.Done(); n.record(a) }()
		}
	}
}

// first reports whether this replica has not recorded the alert yet and
// is not trying to, and notes it; false after Close.
func (n *Notifier) first(a Alert) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, waiting := n.unrecorded[a.ID]; !n.open || n.seen[a.ID] || waiting {
		return false
	}
	if len(n.seen) > 100_000 { // months turn; one forgotten is asked of the store again
		n.seen = map[string]bool{}
	}
	n.seen[a.ID] = true
	return true
}

// record puts the alert in the store for delivery; one the store cannot
// take now is kept and recorded by the driver when it answers.
func (n *Notifier) record(a Alert) {
	ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
	won, err := n.opt.Store.Claim(ctx, a)
	cancel()
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		if _, again := n.unrecorded[a.ID]; !again {
			n.opt.Log.Warn("budget alert not recorded; trying again until the store answers", "event_id", a.ID,
				"subject", a.Subject(), "threshold", a.Threshold, "err", err)
		}
		n.unrecorded[a.ID] = a
		delete(n.seen, a.ID)
		return
	}
	delete(n.unrecorded, a.ID)
	n.seen[a.ID] = true
	if won {
		select {
		case n.kick <- struct{}{}:
		default:
		}
	}
}

// drive records the crossings the store could not take, and tries the
// due deliveries, every Poll (at once after a new one) until Close.
func (n *Notifier) drive() {
	defer n.wg.Done()
	t := time.NewTicker(n.opt.Poll)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		case <-n.kick:
		}
		n.mu.Lock()
		var again []Alert
		for _, a := range n.unrecorded {
			again = append(again, a)
		}
		n.mu.Unlock()
		for _, a := range again {
			n.record(a)
		}
		n.tryDue()
	}
}

// dueBatch is how many deliveries one replica tries at once.
const dueBatch = 32

// tryDue leases the due deliveries and tries each, in parallel.
func (n *Notifier) tryDue() {
	now := n.opt.Now()
	// The lease outlasts one attempt at every webhook.
	lease := now.Add(time.Duration(len(n.webhooks())+1) * n.opt.Timeout)
	ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
	due, err := n.opt.Store.Due(ctx, now, lease, dueBatch)
	cancel()
	if err != nil {
		n.opt.Log.Warn("due budget alerts not read", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, d := range due {
		wg.Add(1)
		go func() { defer wg.Done(); n.attempt(d) }()
	}
	wg.Wait()
}

// Deliveries lists the deliveries, for the admin API.
func (n *Notifier) Deliveries(ctx context.Context, f Filter) ([]Delivery, error) {
	if f.Limit <= 0 {
		f.Limit = 100
	}
	return n.opt.Store.List(ctx, f)
}

// Redeliver makes a delivery pending again, sent at once (to every
// webhook) and retried for a new window.
func (n *Notifier) Redeliver(ctx context.Context, id string) (Delivery, error) {
	d, err := n.opt.Store.Redeliver(ctx, id, n.opt.Now().UTC())
	if err != nil {
		return Delivery{}, err
	}
	select {
	case n.kick <- struct{}{}:
	default:
	}
	return d, nil
}

// Close stops new alerts and waits, until ctx ends, for the attempts in
// flight; what is pending stays in the store for the next start or
// another replica.
func (n *Notifier) Close(ctx context.Context) error {
	n.mu.Lock()
	if n.open {
		n.open = false
		close(n.stop)
	}
	pending := len(n.unrecorded)
	n.mu.Unlock()
	if pending > 0 {
		n.opt.Log.Error("budget alerts crossed but never recorded: the store did not answer before the shutdown", "alerts", pending)
	}
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
