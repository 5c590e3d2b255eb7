package keys

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/obol/obol/quota"
)

// Identity is an authenticated API key as the rest of obol sees it: who
// it is, what it may do, and its limits resolved against its tier. A
// config-declared key and a stored key resolve to the same type.
type Identity struct {
	ID     string
	Name   string
	Tier   string
	Models []string // the models the key may use; empty means all
	// Scopes are what the key may do, listed: an empty list allows
	// nothing. A configuration key that names none is given AllScopes
	// when it is resolved, so there is no second meaning for nil.
	Scopes []string
	// Limits are its tier's with the key's own overrides; 0 is unlimited.
	Limits quota.Limits
	// Project is the project the key belongs to ("" for none), whose
	// limits hold across all its keys.
	Project       string
	ProjectLimits quota.Limits
	// Alerts and ProjectAlerts are the fractions of the key's and the
	// project's budgets whose crossing sends an alert.
	Alerts, ProjectAlerts []float64
	subject               quota.Subject
}

// Subject is what the key's requests count against: the key and its
// project, made once when the key was resolved.
func (i *Identity) Subject() quota.Subject {
	if i.subject.Key == "" {
		return i.newSubject()
	}
	return i.subject
}

func (i *Identity) newSubject() quota.Subject {
	return quota.Subject{Key: i.ID, Limits: i.Limits, Project: i.Project, ProjectLimits: i.ProjectLimits,
		Alerts: i.Alerts, ProjectAlerts: i.ProjectAlerts}.Prepared()
}

// Has reports whether the identity holds scope; chat implies chat:stream.
func (i *Identity) Has(scope string) bool { return hasScope(i.Scopes, scope) }

// Allows reports whether the identity may use the model.
func (i *Identity) Allows(model string) bool {
	return len(i.Models) == 0 || slices.Contains(i.Models, model)
}

func hasScope(scopes []string, scope string) bool {
	for _, s := range scopes {
		if s == scope || (s == ScopeChat && scope == ScopeChatStream) {
			return true
		}
	}
	return false
}

// Static is a key declared in the configuration file: only the SHA-256
// of its secret is known.
type Static struct {
	ID     string
	Name   string
	Tier   string
	SHA256 [sha256.Size]byte
	Models []string
	Limits Limits
	Scopes []string // empty: every scope
	// Project is the configured project it belongs to; "" for none.
	Project string
	Budget  *Budget
}

// key is the configuration key as the admin API lists it (Config set;
// no secret digest shown, no times).
func (s Static) key() *Key {
	scopes := s.Scopes
	if len(scopes) == 0 {
		scopes = AllScopes
	}
	return &Key{ID: s.ID, Name: s.Name, Tier: s.Tier, Models: s.Models, Limits: s.Limits.clone(), Scopes: scopes,
		Project: s.Project, Budget: s.Budget.clone(), Config: true}
}

// resolve is a stored key as an Identity, its limits from its tier and
// its project's. A tier or project dropped from the configuration must
// not leave its keys unlimited: it is an error.
func resolve(k *Key, tiers quota.Tiers, projects Projects) (*Identity, error) {
	base, ok := tiers[k.Tier]
	lim := k.Limits.Over(base)
	if !ok {
		return nil, fmt.Errorf("key %s: tier %q is not configured", k.ID, k.Tier)
	}
	lim.Budget, lim.StrictBudget = k.Budget.monthly(), k.Budget.strict()
	id := &Identity{ID: k.ID, Name: k.Name, Tier: k.Tier, Models: k.Models, Scopes: k.Scopes, Limits: lim,
		Project: k.Project, Alerts: k.Budget.alerts()}
	if k.Project != "" {
		p, ok := projects[k.Project]
		if !ok {
			return nil, fmt.Errorf("key %s: project %q: %w", k.ID, k.Project, errUnknownProject)
		}
		id.ProjectLimits, id.ProjectAlerts = p.quotaLimits(), p.Budget.alerts()
	}
	id.subject = id.newSubject()
	return id, nil
}

// staticIndex holds the configuration's keys by the digest of their
// secrets.
type staticIndex map[[sha256.Size]byte]staticEntry

type staticEntry struct {
	digest [sha256.Size]byte
	id     *Identity
}

func newStaticIndex(keys []Static, tiers quota.Tiers, projects Projects) (staticIndex, error) {
	idx := make(staticIndex, len(keys))
	for _, s := range keys {
		scopes := s.Scopes
		if len(scopes) == 0 {
			scopes = AllScopes
		}
		id, err := resolve(&Key{ID: s.ID, Name: s.Name, Tier: s.Tier, Models: s.Models, Limits: s.Limits, Scopes: scopes,
			Project: s.Project, Budget: s.Budget}, tiers, projects)
		if err != nil {
			return nil, err
		}
		idx[s.SHA256] = staticEntry{digest: s.SHA256, id: id}
	}
	return idx, nil
}

// lookup hashes the secret and looks the digest up. The map lookup
// branches on digest bytes, which an attacker cannot steer without
// inverting SHA-256; the confirming comparison is constant-time.
func (idx staticIndex) lookup(secret string) *Identity {
	d := sha256.Sum256([]byte(secret))
	e, ok := idx[d]
	if !ok || subtle.ConstantTimeCompare(e.digest[:], d[:]) != 1 {
		return nil
	}
	return e.id
}

// AdminTokens are the secrets that open the admin API, each with a name
// for the access log and the audit records; only their SHA-256 digests
// are held. Several at once let a new token be rolled out before the old
// one is removed.
type AdminTokens struct{ list []AdminTokenDigest }

// AdminTokenDigest is one admin token: its name and its secret's SHA-256.
type AdminTokenDigest struct {
	Name   string
	SHA256 [sha256.Size]byte
}

// NewAdminTokens holds tokens; none opens nothing.
func NewAdminTokens(tokens ...AdminTokenDigest) *AdminTokens {
	return &AdminTokens{list: append([]AdminTokenDigest(nil), tokens...)}
}

// AdminTokenOf is a named secret's digest.
func AdminTokenOf(name, secret string) AdminTokenDigest {
	return AdminTokenDigest{Name: name, SHA256: sha256.Sum256([]byte(secret))}
}

// Set reports whether any token was given.
func (t *AdminTokens) Set() bool { return t != nil && len(t.list) > 0 }

// Match returns the name of the token secret is, comparing with every
// token in constant time.
func (t *AdminTokens) Match(secret string) (name string, ok bool) {
	if !t.Set() {
		return "", false
	}
	d := sha256.Sum256([]byte(secret))
	for _, tok := range t.list {
		if subtle.ConstantTimeCompare(d[:], tok.SHA256[:]) == 1 && !ok {
			name, ok = tok.Name, true
		}
	}
	return name, ok
}

// Names are the tokens' names, in order.
func (t *AdminTokens) Names() []string {
	var out []string
	for _, tok := range t.list {
		out = append(out, tok.Name)
	}
	return out
}

// CheckAdminToken refuses an admin token that is easy to guess: under 16
// characters, fewer than 10 distinct ones, or under 128 bits by a simple
// estimate (its length times the bits of a character drawn from the
// classes it uses: digits, lower case, upper case, others).
func CheckAdminToken(token string) error {
	const how = "make one with: openssl rand -hex 32"
	if len(token) < 16 {
		return fmt.Errorf("at least 16 characters, please (%s)", how)
	}
	distinct := map[rune]bool{}
	var digit, lower, upper, other bool
	for _, r := range token {
		distinct[r] = true
		switch {
		case r >= '0' && r <= '9':
			digit = true
		case r >= 'a' && r <= 'z':
			lower = true
		case r >= 'A' && r <= 'Z':
			upper = true
		default:
			other = true
		}
	}
	pool := 0.0
	for _, c := range []struct {
		in   bool
		size float64
	}{{digit, 10}, {lower, 26}, {upper, 26}, {other, 33}} {
		if c.in {
			pool += c.size
		}
	}
	if len(distinct) < 10 || float64(utf8.RuneCountInString(token))*math.Log2(pool) < 128 {
		return fmt.Errorf("too easy to guess (fewer than 10 distinct characters, or under 128 bits); %s", how)
	}
	return nil
}
