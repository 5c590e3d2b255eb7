package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/obol/obol/money"
)

// event is the body POSTed: the shape docs/billing.md documents.
type event struct {
	Type      string            `json:"type"`
	ID        string            `json:"id"`
	Created   int64             `json:"created"`
	Subject   map[string]string `json:"subject"`
	Threshold float64           `json:"threshold"`
	Spent     money.Money       `json:"spent"`
	Budget    money.Money       `json:"budget"`
	Currency  string            `json:"currency"`
	Period    string            `json:"period"`
}

// Body is the alert's event as JSON.
func (a Alert) Body() []byte {
	subject := map[string]string{"key": a.Key}
	if a.Project != "" {
		subject = map[string]string{"project": a.Project}
	}
	b, _ := json.Marshal(event{Type: "budget.threshold", ID: a.ID, Created: a.Created.Unix(), Subject: subject,
		Threshold: a.Threshold, Spent: a.Spent, Budget: a.Budget, Currency: "usd", Period: a.Period})
	return b
}

// Sign is the X-Obol-Signature of body sent at t with secret, as Stripe
// signs: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">", so that
// a receiver can refuse an old event replayed.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signature header of body, as a receiver would: a v1
// that is the body's HMAC with secret, at a time within tolerance of now.
func Verify(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("no timestamp in the signature")
	}
	if d := now.Sub(time.Unix(sec, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("signed %s from now: outside the tolerance", d.Round(time.Second))
	}
	want := mac(secret, ts, body)
	for _, s := range sigs {
		if hmac.Equal([]byte(s), []byte(want)) {
			return nil
		}
	}
	return errors.New("no signature matches")
}

// attempt tries a leased delivery once at every webhook that has not
// taken it, and records how it stands: delivered, pending again after a
// backoff, or failed once the retry window is over.
func (n *Notifier) attempt(d Delivery) {
	body := d.Body()
	var lastErr error
	for _, w := range n.webhooks() {
		if slices.Contains(d.DeliveredTo, w.URL) {
			continue
		}
		if err := n.post(w, d.ID, body); err != nil {
			lastErr = fmt.Errorf("%s: %w", w.URL, err)
			continue
		}
		d.DeliveredTo = append(d.DeliveredTo, w.URL)
		n.count("delivered")
		n.opt.Log.Info("budget alert delivered", "event_id", d.ID, "subject", d.Subject(), "threshold", d.Threshold,
			"webhook", w.URL, "attempt", d.Attempts+1)
	}
	now := n.opt.Now().UTC()
	d.Attempts++
	switch {
	case lastErr == nil:
		d.State, d.DeliveredAt, d.LastError = Delivered, &now, ""
	case now.Sub(d.ClaimedAt) >= n.opt.RetryFor:
		d.State, d.FailedAt, d.LastError = Failed, &now, lastErr.Error()
		n.count("failed")
		n.opt.Log.Error("budget alert not delivered within its retry window; kept as failed (POST /v1/admin/alerts/ID/redeliver sends it again)",
			"event_id", d.ID, "subject", d.Subject(), "threshold", d.Threshold, "attempts", d.Attempts, "err", lastErr, "body", string(body))
	default:
		wait := n.opt.Retry << min(d.Attempts-1, 30)
		if wait <= 0 || wait > n.opt.MaxRetry {
			wait = n.opt.MaxRetry
		}
		d.NextAt, d.LastError = now.Add(wait), lastErr.Error()
		n.count("retried")
		n.opt.Log.Warn("budget alert delivery failed; retrying", "event_id", d.ID, "attempt", d.Attempts,
			"in", wait.String(), "err", lastErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
	defer cancel()
	if err := n.opt.Store.Record(ctx, d); err != nil {
		n.opt.Log.Warn("budget alert outcome not recorded; it is tried again when its lease ends", "event_id", d.ID, "err", err)
	}
}

// post sends one attempt; anything but a 2xx is an error.
func (n *Notifier) post(w Webhook, id string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), n.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "obol-webhooks")
	req.Header.Set("X-Obol-Event-Id", id)
	req.Header.Set("X-Obol-Event-Type", "budget.threshold")
	req.Header.Set("X-Obol-Signature", Sign(w.Secret, n.opt.Now(), body))
	resp, err := n.opt.Client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return &statusError{resp.StatusCode}
	}
	return nil
}

type statusError struct{ code int }

func (e *statusError) Error() string { return "the webhook answered " + strconv.Itoa(e.code) }
