package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/alerts"
	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/money"
)

// AlertAdmin lists budget alert deliveries and sends one again.
type AlertAdmin interface {
	Deliveries(ctx context.Context, f alerts.Filter) ([]alerts.Delivery, error)
	Redeliver(ctx context.Context, id string) (alerts.Delivery, error)
}

// alertView is a delivery as the admin API shows it.
type alertView struct {
	ID          string            `json:"id"`
	Object      string            `json:"object"`
	Subject     map[string]string `json:"subject"`
	Period      string            `json:"period"`
	Threshold   float64           `json:"threshold"`
	Spent       money.Money       `json:"spent"`
	Budget      money.Money       `json:"budget"`
	State       string            `json:"state"`
	Attempts    int               `json:"attempts"`
	LastError   *string           `json:"last_error"`
	Delivered   int               `json:"webhooks_delivered"`
	ClaimedAt   time.Time         `json:"claimed_at"`
	NextAt      *time.Time        `json:"next_attempt_at"`
	DeliveredAt *time.Time        `json:"delivered_at"`
	FailedAt    *time.Time        `json:"failed_at"`
}

func alertViewOf(d alerts.Delivery) alertView {
	v := alertView{ID: d.ID, Object: "alert_delivery", Subject: map[string]string{"key": d.Key}, Period: d.Period,
		Threshold: d.Threshold, Spent: d.Spent, Budget: d.Budget, State: d.State, Attempts: d.Attempts,
		Delivered: len(d.DeliveredTo), ClaimedAt: d.ClaimedAt, DeliveredAt: d.DeliveredAt, FailedAt: d.FailedAt}
	if d.Project != "" {
		v.Subject = map[string]string{"project": d.Project}
	}
	if d.LastError != "" {
		v.LastError = &d.LastError
	}
	if d.State == alerts.Pending {
		v.NextAt = &d.NextAt
	}
	return v
}

var alertPeriod = regexp.MustCompile(`^\d{4}-\d{2}$`)

// listAlerts is GET /v1/admin/alerts: deliveries, newest first, by
// subject (key= or project=), period (YYYY-MM), state and limit.
func (a *API) listAlerts(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	if a.alerts == nil {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this gateway sends no budget alerts (no webhooks are configured)"}
	}
	q := r.URL.Query()
	var f alerts.Filter
	for name := range q {
		switch v := q.Get(name); name {
		case "key":
			f.Subject = "key:" + v
		case "project":
			f.Subject = "project:" + v
		case "period":
			if !alertPeriod.MatchString(v) {
				return apierr.BadRequest("period", "period must be YYYY-MM")
			}
			f.Period = v
		case "state":
			if v != alerts.Pending && v != alerts.Delivered && v != alerts.Failed {
				return apierr.BadRequest("state", "state must be pending, delivered or failed")
			}
			f.State = v
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 1000 {
				return apierr.BadRequest("limit", "limit must be 1 to 1000")
			}
			f.Limit = n
		default:
			return apierr.BadRequest(name, fmt.Sprintf("unknown parameter %q; alerts take key, project, period, state and limit", clip.String(name, 40)))
		}
	}
	ds, err := a.alerts.Deliveries(r.Context(), f)
	if err != nil {
		return apierr.Unavailable("the alert deliveries cannot be read right now; retry shortly", err)
	}
	out := make([]alertView, 0, len(ds))
	for _, d := range ds {
		out = append(out, alertViewOf(d))
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpapi.WriteJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

// redeliverAlert is POST /v1/admin/alerts/{id}/redeliver: the delivery is
// pending again, sent at once to every webhook and retried as a new one.
func (a *API) redeliverAlert(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	if a.alerts == nil {
		return &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this gateway sends no budget alerts (no webhooks are configured)"}
	}
	d, err := a.alerts.Redeliver(r.Context(), ps.ByName("id"))
	switch {
	case errors.Is(err, alerts.ErrNotFound):
		return &apierr.Error{Code: apierr.CodeNotFound, Param: "id", Message: fmt.Sprintf("no alert delivery %q", clip.String(ps.ByName("id"), 40))}
	case err != nil:
		return apierr.Unavailable("the alert delivery cannot be changed right now; retry shortly", err)
	}
	return httpapi.WriteJSON(w, http.StatusOK, alertViewOf(d))
}
