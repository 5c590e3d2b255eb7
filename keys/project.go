package keys

import (
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/obol/obol/money"
	"github.com/obol/obol/quota"
)

// Project groups keys under limits and a budget that hold across all of
// them, whichever key drives them. A project is declared in the
// configuration (read-only to the API) or stored by the admin API.
type Project struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Limits are the project's own; nil or 0 is unlimited (a project has
	// no tier).
	Limits    Limits            `json:"limits"`
	Budget    *Budget           `json:"budget"`
	Metadata  map[string]string `json:"metadata"`
	CreatedAt time.Time         `json:"created_at"`
	// Config: declared in the configuration file.
	Config bool `json:"-"`
}

// Budget is a monthly money budget (UTC calendar month) and the
// fractions of it whose crossing sends an alert.
type Budget struct {
	Monthly money.Money `json:"monthly"`
	// AlertAt are fractions of Monthly in (0, 10], ascending; nil is
	// DefaultAlertAt, empty is none.
	AlertAt []float64 `json:"alert_at"`
	// Strict admits a request only while its cost bound fits in what the
	// budget leaves (spent and held by requests in flight), so that spend
	// never passes it; otherwise spend may pass it by the bounds of the
	// requests in flight when it was reached.
	Strict bool `json:"strict"`
}

// DefaultAlertAt are the thresholds of a budget that names none.
var DefaultAlertAt = []float64{0.5, 0.8, 1.0}

// Projects are projects by id.
type Projects map[string]*Project

// ProjectID is what a project id may be: it names Redis keys and appears
// in URLs and CSV.
var ProjectID = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// quotaLimits are the project's limits as quota decides them.
func (p *Project) quotaLimits() quota.Limits {
	lim := p.Limits.Over(quota.Limits{}) // a project has no tier: absent is none
	lim.Budget, lim.StrictBudget = p.Budget.monthly(), p.Budget.strict()
	return lim
}

// strict reports whether the budget is strict; none is not.
func (b *Budget) strict() bool { return b != nil && b.Strict }

func (b *Budget) monthly() int64 {
	if b == nil {
		return 0
	}
	return int64(b.Monthly)
}

// alerts are the budget's thresholds.
func (b *Budget) alerts() []float64 {
	switch {
	case b == nil || b.Monthly <= 0:
		return nil
	case b.AlertAt == nil:
		return DefaultAlertAt
	}
	return b.AlertAt
}

// clone returns a copy that shares nothing mutable with p.
func (p *Project) clone() *Project {
	c := *p
	c.Limits, c.Budget, c.Metadata = p.Limits.clone(), p.Budget.clone(), maps.Clone(p.Metadata)
	return &c
}

func (b *Budget) clone() *Budget {
	if b == nil {
		return nil
	}
	c := *b
	c.AlertAt = slices.Clone(b.AlertAt)
	return &c
}

func (l Limits) clone() Limits {
	cp := func(x *int64) *int64 {
		if x == nil {
			return nil
		}
		v := *x
		return &v
	}
	return Limits{RPM: cp(l.RPM), TPM: cp(l.TPM), TPD: cp(l.TPD), Concurrency: cp(l.Concurrency)}
}

// CheckBudget validates a budget; field names it in errors.
func CheckBudget(b *Budget, field string) error {
	if b == nil {
		return nil
	}
	if b.Monthly < 0 {
		return &InvalidError{Field: field + ".monthly", Msg: "a budget is an amount of USD ≥ 0 (0 is none)"}
	}
	if len(b.AlertAt) > 10 {
		return &InvalidError{Field: field + ".alert_at", Msg: "at most 10 thresholds"}
	}
	for i, a := range b.AlertAt {
		if !(a > 0 && a <= 10) || (i > 0 && a <= b.AlertAt[i-1]) {
			return &InvalidError{Field: field + ".alert_at", Msg: "thresholds are fractions of the budget in (0, 10], ascending (1.0 is the whole budget)"}
		}
	}
	return nil
}

// checkLimits validates a key's or project's own limits.
func checkLimits(l Limits) error {
	for name, v := range map[string]*int64{"rpm": l.RPM, "tpm": l.TPM, "tpd": l.TPD, "concurrency": l.Concurrency} {
		if v != nil && *v < 0 {
			return &InvalidError{Field: "limits." + name, Msg: "a limit is a whole number ≥ 0 (0 is unlimited)"}
		}
	}
	return nil
}

// checkMetadata validates metadata: what a dashboard can show.
func checkMetadata(m map[string]string) error {
	if len(m) > 16 {
		return &InvalidError{Field: "metadata", Msg: "at most 16 metadata entries"}
	}
	for n, v := range m {
		if len(n) > 64 || len(v) > 512 {
			return &InvalidError{Field: "metadata", Msg: "metadata names are at most 64 bytes, values 512"}
		}
		if err := checkText("metadata", n); err != nil {
			return err
		}
		if err := checkText("metadata."+n, v); err != nil {
			return err
		}
	}
	return nil
}

// checkName validates a key's or a project's name.
func checkName(name string) error {
	if len(name) > 200 {
		return &InvalidError{Field: "name", Msg: "a name is at most 200 bytes"}
	}
	return checkText("name", name)
}

// checkText refuses what no store keeps as text: a NUL character
// (PostgreSQL's text and jsonb refuse it).
func checkText(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return &InvalidError{Field: field, Msg: "must not contain a NUL character (U+0000)"}
	}
	return nil
}

// CheckProject validates a project as the admin API and the
// configuration take it.
func CheckProject(p *Project) error {
	if !ProjectID.MatchString(p.ID) {
		return &InvalidError{Field: "id", Msg: "a project id is 1 to 64 of a-z, 0-9, _ and -"}
	}
	if err := checkName(p.Name); err != nil {
		return err
	}
	if err := checkLimits(p.Limits); err != nil {
		return err
	}
	if err := CheckBudget(p.Budget, "budget"); err != nil {
		return err
	}
	return checkMetadata(p.Metadata)
}
