// Package quota holds tiers and limits: admission before a backend is
// called and settlement after it, in Redis shared by every replica
// (Redis, behind a Limiter that rides out outages) or in process for a
// single replica (Embedded).
package quota

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// Limits are a key's allowances; 0 means unlimited.
type Limits struct {
	RPM int64 // requests per rolling minute
	TPM int64 // tokens per rolling minute
	TPD int64 // tokens per UTC calendar day
	// Concurrency caps the requests in flight: each admitted one holds a
	// lease until it is settled, or until the lease expires (LeaseTTL)
	// unless renewed, so a replica that dies frees its leases.
	Concurrency int64
	// Budget is the money the level may spend in a UTC calendar month,
	// in picodollars (money.Money). A request is admitted while what is
	// spent plus what requests in flight have reserved is below it, and
	// reserves its cost bound; settlement replaces that with its cost.
	// Spend passes it by less than the bounds of the requests in flight
	// when it was reached.
	Budget int64
	// StrictBudget admits a request only while what is spent, what
	// requests in flight hold and its own cost bound fit in Budget, so
	// that spend never passes it.
	StrictBudget bool
}

// LeaseTTL is how long a concurrency lease lives without renewal; a
// request in flight renews it every LeaseTTL/3.
const LeaseTTL = 30 * time.Second

// Limit names the allowance that refused a request.
type Limit int

const (
	// None: the request was admitted.
	None Limit = iota
	// Requests is RPM.
	Requests
	// Tokens is TPM.
	Tokens
	// DailyTokens is TPD.
	DailyTokens
	// Concurrent is the cap on requests in flight.
	Concurrent
	// Budget is the monthly money budget.
	Budget
)

// String is the limit's short name, as metrics label it: rpm, tpm, tpd,
// concurrency, budget.
func (l Limit) String() string {
	switch l {
	case Requests:
		return "rpm"
	case Tokens:
		return "tpm"
	case DailyTokens:
		return "tpd"
	case Concurrent:
		return "concurrency"
	case Budget:
		return "budget"
	}
	return "none"
}

// Subject is what a request counts against: its key and, when the key
// belongs to a project, the project as well. Both levels are decided in
// one step and charged together, so replicas admit together what one
// would.
type Subject struct {
	Key    string
	Limits Limits
	// Project is "" when the key belongs to none.
	Project       string
	ProjectLimits Limits
	// Alerts and ProjectAlerts are the fractions of each level's budget
	// whose crossing is reported (Options.OnSpend); none: nothing is.
	Alerts, ProjectAlerts []float64
	// projectLevel is the project level's counters' name, made once by
	// Prepared instead of on every decision.
	projectLevel string
}

// Prepared returns the subject with its levels' names made, for a caller
// that decides for it many times.
func (s Subject) Prepared() Subject {
	if s.Project != "" {
		s.projectLevel = "project:" + s.Project
	}
	return s
}

// One is the subject of a key that belongs to no project.
func One(key string, lim Limits) Subject { return Subject{Key: key, Limits: lim} }

// level is one of a subject's levels: its counters' name and its limits.
type level struct {
	id      string
	lim     Limits
	project bool
	alerts  []float64
}

// leased reports whether the level's requests hold a lease while in
// flight (Limits.leased).
func (l level) leased() bool { return l.lim.leased() }

// levels are the key's, then the project's; in an array, for the
// in-process store's hot path allocates nothing.
func (s Subject) levels() (ls [2]level, n int) {
	ls[0] = level{id: s.Key, lim: s.Limits, alerts: s.Alerts}
	if s.Project == "" {
		return ls, 1
	}
	id := s.projectLevel
	if id == "" {
		id = "project:" + s.Project
	}
	ls[1] = level{id: id, lim: s.ProjectLimits, project: true, alerts: s.ProjectAlerts}
	return ls, 2
}

// leased reports whether a level takes a lease for the request.
func (s Subject) leased() bool {
	return s.Limits.leased() || (s.Project != "" && s.ProjectLimits.leased())
}

// leased reports whether requests under l hold a lease while in flight:
// to be counted against a cap, or to have their reserved cost given back
// if they are never settled.
func (l Limits) leased() bool { return l.Concurrency > 0 || l.Budget > 0 }

// Decision is the outcome of an admission, with what the rate-limit
// headers need whether or not the request was admitted. Its figures are
// the key's; Project has the project's.
type Decision struct {
	Allowed bool
	Denied  Limit
	// ByProject: the refusal is the project's limit, not the key's.
	ByProject bool
	// RetryAfter is how long until the request would be admitted; for a
	// request that can never be (Hopeless), it is meaningless.
	RetryAfter time.Duration
	// Hopeless: waiting cannot help (the request alone exceeds TPM or TPD).
	Hopeless bool

	RequestsRemaining int64
	RequestsReset     time.Duration // until the request allowance is full again
	TokensUsed        int64         // TPM in use before this request
	TokensRemaining   int64
	TokensReset       time.Duration
	DailyUsed         int64 // TPD spent today before this request
	InFlight          int64 // leases held before this request (with a concurrency cap)
	// Spent is the money spent this month and Held what requests in
	// flight have reserved, in picodollars, before this request (with a
	// budget).
	Spent, Held int64

	// Project is the project level's figures; nil without a project.
	Project *Decision

	// Reservation is what settlement needs; nil when not admitted.
	Reservation *Reservation
}

// Reservation is an admitted request's estimate, to be settled once.
type Reservation struct {
	Subject
	Day    string // the UTC day the tokens were reserved on (YYYYMMDD)
	Month  string // the UTC month its cost is charged to (YYYYMM)
	Tokens int64
	Cost   int64 // the cost bound reserved, in picodollars
	// Lease is the lease the request holds at every level with a
	// concurrency cap or a budget ("" without one), released when it is
	// settled.
	Lease string
	local bool   // made by a Limiter's local fallback, settled there
	slice *slice // admitted from this replica's slice (Slices), settled into it
}

// day returns the UTC calendar day of t as YYYYMMDD and the time until it ends.
func day(t time.Time) (string, time.Duration) {
	t = t.UTC()
	end := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.UTC)
	return t.Format("20060102"), end.Sub(t)
}

// Tiers are the named sets of limits keys belong to.
type Tiers map[string]Limits

// DefaultTiers are the default tiers (docs/configuration.md).
var DefaultTiers = Tiers{
	"free": {RPM: 20, TPM: 40_000, TPD: 250_000},
	"pro":  {RPM: 500, TPM: 500_000, TPD: 10_000_000},
	"team": {RPM: 2000, TPM: 2_000_000, TPD: 0},
}

// newLease is a lease id, unique across replicas.
func newLease() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
