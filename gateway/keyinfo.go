package gateway

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/usage"
)

// keyInfo is GET /v1/key (callingKey): the calling key, what it may do,
// its limits, what remains of them now, its spend this month and its
// budget: the numbers the rate-limit headers and /v1/usage show; its
// project's limits, spend and budget, and what they leave.
type keyInfo struct {
	Object    string           `json:"object"`
	ID        string           `json:"id"`
	Name      string           `json:"name"`
	Tier      string           `json:"tier"`
	Project   *projectInfo     `json:"project"`
	Models    []string         `json:"models"`
	Scopes    []string         `json:"scopes"`
	Limits    keys.Shown       `json:"limits"`
	Remaining keyRemains       `json:"remaining"`
	Spend     usage.MonthSpend `json:"spend"`
	Budget    *budgetInfo      `json:"budget"` // null: none
}

// projectInfo is the key's project: its limits, across all its keys, and
// what they leave now; its spend this month (every key's) and budget.
type projectInfo struct {
	ID        string            `json:"id"`
	Name      string            `json:"name"`
	Limits    keys.Shown        `json:"limits"`
	Remaining keyRemains        `json:"remaining"`
	Spend     *usage.MonthSpend `json:"spend"`
	Budget    *budgetInfo       `json:"budget"`
}

// budgetInfo is a monthly budget and what is left of it: the budget less
// the ledger's spend this month (what /v1/usage shows). Held is what
// requests in flight have reserved against it; a request is admitted
// while spent + held is below the budget.
type budgetInfo struct {
	Monthly   money.Money `json:"monthly"`
	AlertAt   []float64   `json:"alert_at"`
	Period    string      `json:"period"`
	Spent     money.Money `json:"spent"`
	Held      money.Money `json:"held"`
	Remaining money.Money `json:"remaining"`
	ResetsAt  time.Time   `json:"resets_at"`
	Currency  string      `json:"currency"`
	// Strict: a request is admitted only if its cost bound fits in what
	// is left, so spend never passes the budget.
	Strict bool `json:"strict"`
}

// budgetOf is a level's budget by its spend, or nil without one.
func budgetOf(lim quota.Limits, alerts []float64, spent money.Money, d quota.Decision, now time.Time) *budgetInfo {
	if lim.Budget <= 0 {
		return nil
	}
	now = now.UTC()
	b := &budgetInfo{Monthly: money.Money(lim.Budget), AlertAt: alerts, Period: now.Format("2006-01"), Spent: spent,
		Held: money.Money(d.Held), Remaining: max(money.Money(lim.Budget)-spent, 0),
		ResetsAt: time.Date(now.Year(), now.Month()+1, 1, 0, 0, 0, 0, time.UTC), Currency: "usd", Strict: lim.StrictBudget}
	if b.AlertAt == nil {
		b.AlertAt = []float64{}
	}
	return b
}

// keyRemains is what the allowances leave now; null is unlimited.
type keyRemains struct {
	Requests    *int64     `json:"requests"`
	Tokens      *int64     `json:"tokens"`
	TokensToday *int64     `json:"tokens_today"`
	ResetsAt    *time.Time `json:"tokens_today_reset"`
	InFlight    int64      `json:"in_flight"`
}

func limit(v int64) *int64 {
	if v <= 0 {
		return nil
	}
	return &v
}

func limitsOf(l quota.Limits) keys.Shown {
	return keys.ShownOf(l.RPM, l.TPM, l.TPD, l.Concurrency)
}

// remainsOf is what lim leaves by the figures of d.
func remainsOf(lim quota.Limits, d quota.Decision, now time.Time) keyRemains {
	r := keyRemains{InFlight: d.InFlight}
	if lim.RPM > 0 {
		r.Requests = &d.RequestsRemaining
	}
	if lim.TPM > 0 {
		r.Tokens = &d.TokensRemaining
	}
	if lim.TPD > 0 {
		left := max(lim.TPD-d.DailyUsed, 0)
		midnight := time.Date(now.UTC().Year(), now.UTC().Month(), now.UTC().Day()+1, 0, 0, 0, 0, time.UTC)
		r.TokensToday, r.ResetsAt = &left, &midnight
	}
	return r
}

func (s *Server) callingKey(w http.ResponseWriter, r *http.Request, _ httprouter.Params, c *call) error {
	if err := s.authenticate(r, c, "", ""); err != nil {
		return err
	}
	k := c.key
	d, err := s.quota.Peek(r.Context(), k.Subject())
	if err != nil {
		return storeError(err)
	}
	c.rated = true
	now := time.Now()
	rateHeaders(w.Header(), c, d, now)
	period := now.UTC().Format("2006-01")
	sum, err := s.ledger.Summary(r.Context(), k.ID, period)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return err
		}
		return apierr.Unavailable("usage cannot be read", err)
	}
	var month usage.Row
	for _, m := range sum.ByModel {
		month.AddRow(m)
	}
	info := keyInfo{Object: "api_key", ID: k.ID, Name: k.Name, Tier: k.Tier, Models: k.Models, Scopes: k.Scopes,
		Limits: limitsOf(k.Limits), Remaining: remainsOf(k.Limits, d, now), Spend: *usage.SpendOf(period, month)}
	if info.Models == nil {
		info.Models = []string{}
	}
	info.Budget = budgetOf(k.Limits, k.Alerts, sum.TotalCost, d, now)
	if k.Project != "" && d.Project != nil {
		info.Project = s.projectInfoOf(r.Context(), k, *d.Project, now)
	}
	w.Header().Set("Cache-Control", "no-store")
	return httpapi.WriteJSON(w, http.StatusOK, info)
}

// projectInfoOf is the calling key's project as /v1/key shows it.
func (s *Server) projectInfoOf(ctx context.Context, k *keys.Identity, d quota.Decision, now time.Time) *projectInfo {
	p := &projectInfo{ID: k.Project, Limits: limitsOf(k.ProjectLimits), Remaining: remainsOf(k.ProjectLimits, d, now)}
	if s.projects != nil {
		if pr, ok := s.projects.Project(k.Project); ok {
			p.Name = pr.Name
		}
	}
	if row, ok := s.projectSpend(ctx, k.Project); ok {
		p.Spend = usage.SpendOf(now.UTC().Format("2006-01"), row)
		p.Budget = budgetOf(k.ProjectLimits, k.ProjectAlerts, row.Cost, d, now)
	}
	return p
}

// ProjectNames names projects.
type ProjectNames interface {
	Project(id string) (*keys.Project, bool)
}

// ProjectSpend reads a month's usage by project (only: one).
type ProjectSpend interface {
	ByProject(ctx context.Context, month time.Time, only string) (map[string]usage.Row, error)
}

// projectSpend is a project's ledger this month; false when it cannot
// be read, which leaves the spend out of the answer.
func (s *Server) projectSpend(ctx context.Context, project string) (usage.Row, bool) {
	if s.spend == nil {
		return usage.Row{}, false
	}
	now := time.Now().UTC()
	rows, err := s.spend.ByProject(ctx, time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC), project)
	if err != nil {
		return usage.Row{}, false
	}
	return rows[project], true
}
