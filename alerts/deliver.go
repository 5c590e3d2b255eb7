package alerts

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/obol/obol/usage"
)

// event is the body POSTed: the shape the README documents.
type event struct {
	Type      string            `json:"type"`
	ID        string            `json:"id"`
	Created   int64             `json:"created"`
	Subject   map[string]string `json:"subject"`
	Threshold float64           `json:"threshold"`
	Spent     usage.Money       `json:"spent"`
	Budget    usage.Money       `json:"budget"`
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

// Sign is the X-Obol-Signature of body with secret: sha256= and the hex
// HMAC-SHA256.
func Sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// deliver POSTs the alert to w until a 2xx or the attempts run out,
// waiting Retry, then twice that, up to MaxRetry, between them; it
// reports the outcome and the attempts made.
func (n *Notifier) deliver(w Webhook, a Alert) (bool, int) {
	body := a.Body()
	wait := n.opt.Retry
	for attempt := 1; ; attempt++ {
		err := n.post(w, a.ID, body)
		if err == nil {
			n.count("delivered")
			n.opt.Log.Info("budget alert delivered", "event_id", a.ID, "subject", a.Subject(), "threshold", a.Threshold,
				"webhook", w.URL, "attempts", attempt)
			return true, attempt
		}
		if attempt == n.opt.Attempts {
			n.count("failed")
			n.opt.Log.Error("budget alert not delivered; giving up", "event_id", a.ID, "subject", a.Subject(),
				"threshold", a.Threshold, "webhook", w.URL, "attempts", attempt, "err", err, "body", string(body))
			return false, attempt
		}
		n.count("retried")
		n.opt.Log.Warn("budget alert delivery failed; retrying", "event_id", a.ID, "webhook", w.URL,
			"attempt", attempt, "in", wait.String(), "err", err)
		select {
		case <-time.After(wait):
		case <-n.stop: // shutting down: one last try, at once
		}
		wait = min(2*wait, n.opt.MaxRetry)
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
	req.Header.Set("X-Obol-Signature", Sign(w.Secret, body))
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
