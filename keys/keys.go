// Package keys is identity: the configuration's and the stored API keys
// and projects (their records in PostgreSQL, shared by every replica, or
// in the embedded bbolt store), the secrets' format, limits and scopes,
// and a Registry that authenticates from a process cache kept fresh
// across replicas by a change log.
package keys

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash/crc32"
	"maps"
	"strings"
	"time"

	"github.com/obol/obol/internal/crockford"
	"github.com/obol/obol/quota"
)

// Scopes a key may hold.
const (
	ScopeChat       = "chat"        // every chat route, streaming or not
	ScopeChatStream = "chat:stream" // streamed answers only
	ScopeModels     = "models"      // GET /v1/models
	ScopeUsage      = "usage"       // GET /v1/usage
)

// AllScopes are every scope, in a stable order.
var AllScopes = []string{ScopeChat, ScopeChatStream, ScopeModels, ScopeUsage}

// DefaultScopes are a new key's when none are asked for: everything.
var DefaultScopes = []string{ScopeChat, ScopeModels, ScopeUsage}

// Limits are a key's or a project's own limits, each on its own: for a
// key, nil is its tier's; for a project, nil is none; 0 is unlimited.
// The admin API's bodies and the configuration file read them.
type Limits struct {
	RPM         *int64 `json:"rpm,omitempty" yaml:"rpm"`
	TPM         *int64 `json:"tpm,omitempty" yaml:"tpm"`
	TPD         *int64 `json:"tpd,omitempty" yaml:"tpd"`
	Concurrency *int64 `json:"concurrency,omitempty" yaml:"concurrency"`
}

// Over is base (a tier's) with l's own limits applied.
func (l Limits) Over(base quota.Limits) quota.Limits {
	for _, f := range []struct {
		own *int64
		dst *int64
	}{{l.RPM, &base.RPM}, {l.TPM, &base.TPM}, {l.TPD, &base.TPD}, {l.Concurrency, &base.Concurrency}} {
		if f.own != nil {
			*f.dst = *f.own
		}
	}
	return base
}

// Shown are limits as the API shows them: null for none.
type Shown struct {
	RPM *int64 `json:"rpm"`
	TPM *int64 `json:"tpm"`
	TPD *int64 `json:"tpd"`
	// Concurrency is the requests that may be in flight at once.
	Concurrency *int64 `json:"concurrency"`
}

// ShownOf shows resolved limits, 0 (unlimited) as null.
func ShownOf(rpm, tpm, tpd, concurrency int64) Shown {
	v := func(x int64) *int64 {
		if x <= 0 {
			return nil
		}
		return &x
	}
	return Shown{RPM: v(rpm), TPM: v(tpm), TPD: v(tpd), Concurrency: v(concurrency)}
}

// Shown shows a key's or a project's own limits: absent or 0 as null.
func (l Limits) Shown() Shown {
	o := l.Over(quota.Limits{})
	return ShownOf(o.RPM, o.TPM, o.TPD, o.Concurrency)
}

// Key is an API key as stored: everything but its secret, of which only
// the SHA-256 is kept.
type Key struct {
	ID         string            `json:"id"`
	Name       string            `json:"name"`
	Tier       string            `json:"tier"`
	Models     []string          `json:"models"` // empty: all
	Limits     Limits            `json:"limits"`
	Scopes     []string          `json:"scopes"`
	Project    string            `json:"project,omitempty"` // "" for none
	Budget     *Budget           `json:"budget,omitempty"`
	Metadata   map[string]string `json:"metadata"`
	Prefix     string            `json:"prefix"` // the secret's start, to recognise it by
	Hash       string            `json:"sha256"` // hex SHA-256 of the secret
	CreatedAt  time.Time         `json:"created_at"`
	ExpiresAt  *time.Time        `json:"expires_at"`
	RevokedAt  *time.Time        `json:"revoked_at"`
	LastUsedAt *time.Time        `json:"last_used_at"`
	// Config: declared in the configuration file, not stored.
	Config bool `json:"-"`
}

// Active reports whether the key may be used at now: not revoked and
// not expired.
func (k *Key) Active(now time.Time) bool {
	return k.RevokedAt == nil && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// clone returns a copy that shares nothing mutable with k.
func (k *Key) clone() *Key {
	c := *k
	c.Models = append([]string(nil), k.Models...)
	c.Scopes = append([]string(nil), k.Scopes...)
	c.Limits, c.Budget, c.Metadata = k.Limits.clone(), k.Budget.clone(), maps.Clone(k.Metadata)
	return &c
}

// Secrets look like sk-obol-7K2M9QXD4R_<52 random characters><6 checksum
// characters>: a fixed prefix that secret scanners match, the key's
// public id, 260 random bits, and a CRC-32 that lets anyone (a scanner,
// the gateway before any lookup) tell a real secret from a typo. All in
// Crockford's base-32, so a secret survives being read aloud or retyped.
const (
	SecretPrefix = "sk-obol-"
	idLen        = 10
	randLen      = 52
	sumLen       = 6
	secretLen    = len(SecretPrefix) + idLen + 1 + randLen + sumLen
)

// IDPrefix starts every key id: key_ and the id inside the secret.
const IDPrefix = "key_"

// newSecret returns a new key id and its secret.
func newSecret() (id, secret string) {
	pub := randomBase32(idLen)
	body := SecretPrefix + pub + "_" + randomBase32(randLen)
	return IDPrefix + pub, body + checksum(body)
}

func randomBase32(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = crockford.Alphabet[b[i]&31]
	}
	return string(b)
}

func checksum(body string) string {
	c := crc32.ChecksumIEEE([]byte(body))
	out := make([]byte, sumLen)
	for i := sumLen - 1; i >= 0; i-- {
		out[i] = crockford.Alphabet[c&31]
		c >>= 5
	}
	return string(out)
}

// ErrMalformed is a secret that cannot be one of ours.
var ErrMalformed = errors.New("not an obol key")

// ParseSecret checks a secret's form and checksum and returns its key id,
// without any lookup.
func ParseSecret(secret string) (id string, err error) {
	if len(secret) != secretLen || !strings.HasPrefix(secret, SecretPrefix) || secret[len(SecretPrefix)+idLen] != '_' {
		return "", ErrMalformed
	}
	body, sum := secret[:secretLen-sumLen], secret[secretLen-sumLen:]
	if checksum(body) != sum {
		return "", ErrMalformed
	}
	return IDPrefix + secret[len(SecretPrefix):len(SecretPrefix)+idLen], nil
}

// Digest is the hex SHA-256 of a secret, as stored.
func Digest(secret string) string {
	d := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(d[:])
}

// prefixOf is the part of a secret shown in listings: enough to tell keys
// apart, far too little to use.
func prefixOf(secret string) string { return secret[:len(SecretPrefix)+idLen] + "…" }
