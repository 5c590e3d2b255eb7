package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
	"github.com/obol/obol/wire/openai"
)

// Quota admits requests against a key's limits and settles them after.
type Quota interface {
	// Admit reserves tokens and a cost bound (picodollars) for a key and
	// its project, all or nothing.
	Admit(ctx context.Context, sub quota.Subject, tokens, cost int64) (quota.Decision, error)
	// Peek reports the allowances without reserving anything.
	Peek(ctx context.Context, sub quota.Subject) (quota.Decision, error)
	// Settle replaces a reservation's estimate by the actual count and
	// cost, and releases its lease.
	Settle(ctx context.Context, res *quota.Reservation, actual, cost int64) error
	// Renew extends reservations' leases (quota.LeaseTTL).
	Renew(ctx context.Context, res ...*quota.Reservation) error
}

// estimate is what admission reserves against the rate limits: the
// prompt's realistic estimate plus n choices of the output cap the
// backend is held to (capOutput has set one). Using more is a debt later
// requests wait out.
func estimate(req *openai.Request) int64 {
	return int64(req.PromptTokens) + int64(req.N)*int64(req.MaxTokens)
}

// admit reserves the request's estimate and sets the rate-limit headers,
// which then go out with whatever answer follows, streams included.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, c *call, req *openai.Request, m *models.Model) error {
	return s.admitFor(w, r, c, m, estimate(req), s.costBound(c, req, m))
}

// admitFor admits a request of est tokens that can cost bound at most.
func (s *Server) admitFor(w http.ResponseWriter, r *http.Request, c *call, m *models.Model, est int64, bound money.Money) error {
	ctx, span := s.child(r.Context(), "quota.admit")
	d, err := s.quota.Admit(ctx, c.key.Subject(), est, int64(bound))
	span.SetAttributes(attribute.Int64("obol.quota.estimate", est), attribute.Bool("obol.quota.allowed", d.Allowed))
	span.End()
	if err != nil {
		s.metrics.decided(r.Context(), c.key.Tier, "none", "error")
		return storeError(err)
	}
	c.rated = true
	rateHeaders(w.Header(), c, d, time.Now())
	if !d.Allowed {
		outcome := "denied"
		if d.Hopeless {
			outcome = "too_large"
		}
		s.metrics.decided(r.Context(), c.key.Tier, d.Denied.String(), outcome)
		if d.Denied == quota.Budget {
			return budgetSpent(c.key, d, bound, time.Now())
		}
		if d.ByProject && d.Project != nil {
			p := *d.Project
			p.Denied, p.RetryAfter, p.Hopeless = d.Denied, d.RetryAfter, d.Hopeless
			return rateLimited(m.Name, "project "+c.key.Project, c.key.ProjectLimits, p, est)
		}
		return rateLimited(m.Name, "", c.key.Limits, d, est)
	}
	s.metrics.decided(r.Context(), c.key.Tier, "none", "allowed")
	c.reservation = d.Reservation
	if err := r.Context().Err(); err != nil {
		// The client left while it was admitted: no backend is called, and
		// the reservation is settled at zero once the handler returns.
		return err
	}
	if d.Reservation.Lease != "" {
		// Renewed so that a long stream keeps its slot and its held money;
		// a replica that dies loses both within quota.LeaseTTL.
		s.leases.hold(d.Reservation)
	}
	return nil
}

// peekHeaders sets the rate-limit headers of an authenticated answer that
// reserved nothing. Failing to read them is no reason to fail the answer.
func (s *Server) peekHeaders(w http.ResponseWriter, r *http.Request, c *call) {
	if c.key == nil || c.rated {
		return
	}
	d, err := s.quota.Peek(r.Context(), c.key.Subject())
	if err != nil {
		return
	}
	c.rated = true
	rateHeaders(w.Header(), c, d, time.Now())
}

// costBound is what the request can cost at most, which budgets hold:
// the prompt's bound, each token at the dearest price a backend of the
// model can bill it at (a cache write, for an Anthropic backend), and n
// choices of the output cap, at its model's prices.
func (s *Server) costBound(c *call, req *openai.Request, m *models.Model) money.Money {
	return c.live.Prices[c.model].At(c.Start).Most(money.Tokens{Prompt: int64(req.PromptBound), Completion: int64(req.N) * int64(req.MaxTokens)},
		m.Speaks(models.Anthropic))
}

// settle replaces the reservation's estimate by what the request used:
// the backend's usage, the gateway's count of what it relayed, or nothing
// when no backend answered, and its cost bound by its cost (the ledger's
// figure). It runs after the answer went out, whether the request
// succeeded, failed or was abandoned.
func (s *Server) settle(ctx context.Context, c *call, cost money.Money) {
	if c.reservation == nil {
		return
	}
	if c.reservation.Lease != "" {
		s.leases.release(c.reservation)
	}
	var actual int64
	if c.usage != nil {
		actual = int64(c.usage.TotalTokens)
	}
	if err := s.quota.Settle(context.WithoutCancel(ctx), c.reservation, actual, int64(cost)); err != nil {
		s.log.Warn("quota settlement lost; the key stays charged the estimate",
			"request_id", c.ID, "key_id", c.key.ID, "estimate", c.reservation.Tokens, "actual", actual, "err", err)
	}
}

func storeError(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	return apierr.Unavailable("rate limits cannot be checked", err)
}

// rateHeaders sets the key's rate-limit headers: OpenAI's, and on
// Anthropic's routes Anthropic's too.
func rateHeaders(h http.Header, c *call, d quota.Decision, now time.Time) {
	lim := c.key.Limits
	openAIRateHeaders(h, lim, d, now)
	if c.anthropic {
		anthropicRateHeaders(h, lim, d, now)
	}
}

// openAIRateHeaders writes OpenAI's x-ratelimit-* headers for the limits
// a key has (an unlimited one has none), and X-RateLimit-* for its
// requests.
func openAIRateHeaders(h http.Header, lim quota.Limits, d quota.Decision, now time.Time) {
	if lim.RPM > 0 {
		rem := strconv.FormatInt(max(d.RequestsRemaining, 0), 10)
		limit := strconv.FormatInt(lim.RPM, 10)
		h["X-Ratelimit-Limit-Requests"] = []string{limit}
		h["X-Ratelimit-Remaining-Requests"] = []string{rem}
		h["X-Ratelimit-Reset-Requests"] = []string{resetString(d.RequestsReset)}
		h["X-Ratelimit-Limit"] = []string{limit}
		h["X-Ratelimit-Remaining"] = []string{rem}
		h["X-Ratelimit-Reset"] = []string{strconv.FormatInt(now.Add(d.RequestsReset+time.Second-1).Unix(), 10)}
	}
	if lim.TPM > 0 {
		h["X-Ratelimit-Limit-Tokens"] = []string{strconv.FormatInt(lim.TPM, 10)}
		h["X-Ratelimit-Remaining-Tokens"] = []string{strconv.FormatInt(max(d.TokensRemaining, 0), 10)}
		h["X-Ratelimit-Reset-Tokens"] = []string{resetString(d.TokensReset)}
	}
}

// resetString is OpenAI's reset format: a Go duration such as "6m0s" or
// "1.2s", to the millisecond.
func resetString(d time.Duration) string {
	if d < time.Millisecond {
		return "0s"
	}
	return d.Round(time.Millisecond).String()
}

// rateLimited is the 429 for a refused admission, worded as OpenAI words
// it. A request that waiting cannot cure (the day's tokens are spent, or
// it alone is larger than an allowance) says so with x-should-retry:
// false; one larger than the allowance carries no retry delay at all.
// level names a project whose limit it is ("" for the key's own), and
// then leads the message.
func rateLimited(model, level string, lim quota.Limits, d quota.Decision, est int64) *apierr.Error {
	e := rateLimitedAt(model, level, lim, d, est)
	if level != "" && d.Denied != quota.Concurrent {
		e.Message = level + ": " + e.Message
	}
	return e
}

func rateLimitedAt(model, level string, lim quota.Limits, d quota.Decision, est int64) *apierr.Error {
	e := &apierr.Error{Code: apierr.CodeRateLimit, RetryAfter: d.RetryAfter}
	var name string
	var limit, used, requested int64
	switch d.Denied {
	case quota.Concurrent:
		if level == "" {
			level = "this API key"
		}
		e.RetryAfter = time.Second
		e.Message = fmt.Sprintf("Rate limit reached: too many concurrent requests for %s: Limit %d, in flight %d. Please try again in 1s.",
			level, lim.Concurrency, d.InFlight)
		return e
	case quota.Requests:
		name, limit, requested = "requests per min (RPM)", lim.RPM, 1
		used = lim.RPM - max(d.RequestsRemaining, 0)
	case quota.Tokens:
		name, limit, used, requested = "tokens per min (TPM)", lim.TPM, d.TokensUsed, est
	default:
		name, limit, used, requested = "tokens per day (TPD)", lim.TPD, d.DailyUsed, est
		e.NoRetry = true
	}
	if d.Hopeless {
		e.RetryAfter, e.NoRetry = 0, true
		e.Message = fmt.Sprintf("Request too large for %s on %s: Limit %d, Requested %d. "+
			"The input or output tokens must be reduced in order to run successfully (lower max_tokens or shorten the prompt).",
			model, name, limit, requested)
		return e
	}
	e.Message = fmt.Sprintf("Rate limit reached for %s on %s: Limit %d, Used %d, Requested %d. Please try again in %s.",
		model, name, limit, used, requested, retryString(d.RetryAfter))
	return e
}

// retryString is a wait as a person reads it: "1.35s", "5h3m0s".
func retryString(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	if d < time.Minute {
		return d.Round(10 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

// budgetSpent is the 429 of a monthly budget reached: OpenAI's
// insufficient_quota, which its SDKs do not retry, naming the budget and
// when it renews; for a strict budget, also when what it leaves is less
// than the request's cost bound. A budget not spent but held by requests
// in flight (their cost bounds) is a rate limit a second's wait may cure.
func budgetSpent(k *keys.Identity, d quota.Decision, bound money.Money, now time.Time) *apierr.Error {
	who, lim, fig := "this API key", k.Limits, d
	if d.ByProject && d.Project != nil {
		who, lim, fig = "project "+k.Project, k.ProjectLimits, *d.Project
	}
	budget, spent, held := money.Money(lim.Budget).USD(), money.Money(fig.Spent).USD(), money.Money(fig.Held).USD()
	if lim.StrictBudget && fig.Spent < lim.Budget && fig.Spent+int64(bound) > lim.Budget {
		renews := now.UTC().Add(d.RetryAfter).Round(time.Second)
		return &apierr.Error{Code: apierr.CodeInsufficientQuota, NoRetry: true, RetryAfter: d.RetryAfter,
			Message: fmt.Sprintf("Budget exceeded: the strict monthly budget of $%s of %s has $%s left (spent $%s), less than this request may cost ($%s). "+
				"Lower max_tokens or shorten the prompt; the budget renews at %s, or when it is raised.",
				budget, who, money.Money(lim.Budget-fig.Spent).USD(), spent, bound.USD(), renews.Format(time.RFC3339))}
	}
	if fig.Spent < lim.Budget {
		return &apierr.Error{Code: apierr.CodeRateLimit, RetryAfter: time.Second,
			Message: fmt.Sprintf("Rate limit reached: the monthly budget of $%s of %s is spent ($%s) or held by requests in flight ($%s) until they end. Please try again in 1s.",
				budget, who, spent, held)}
	}
	renews := now.UTC().Add(d.RetryAfter).Round(time.Second)
	return &apierr.Error{Code: apierr.CodeInsufficientQuota, NoRetry: true, RetryAfter: d.RetryAfter,
		Message: fmt.Sprintf("Budget exceeded: %s has reached its monthly budget of $%s (spent $%s, $%s held by requests in flight). "+
			"It renews at %s, or when the budget is raised.", who, budget, spent, held, renews.Format(time.RFC3339))}
}
