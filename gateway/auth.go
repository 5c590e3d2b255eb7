package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/obol/obol/quota"
)

// Key is an authenticated API key, as the gateway sees it.
type Key struct {
	ID     string
	Name   string
	Tier   string
	Models []string // models the key may use; empty means all
	// Limits are the key's allowances: its tier's, with the key's own
	// overrides applied; 0 means unlimited.
	Limits quota.Limits
}

// Allows reports whether the key may use the model.
func (k *Key) Allows(model string) bool {
	if len(k.Models) == 0 {
		return true
	}
	for _, m := range k.Models {
		if m == model {
			return true
		}
	}
	return false
}

// Authenticator finds the key a secret belongs to. It returns a nil key
// and nil error for an unknown secret; an error means it could not tell.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*Key, error)
}

// StaticKeys authenticates the keys of the configuration file. Only the
// SHA-256 of each secret is held.
type StaticKeys struct {
	byDigest map[[sha256.Size]byte]staticKey
}

type staticKey struct {
	digest [sha256.Size]byte
	key    *Key
}

// NewStaticKeys indexes keys by the SHA-256 digest of their secrets.
func NewStaticKeys(keys map[[sha256.Size]byte]Key) *StaticKeys {
	s := &StaticKeys{byDigest: make(map[[sha256.Size]byte]staticKey, len(keys))}
	for d, k := range keys {
		s.byDigest[d] = staticKey{digest: d, key: &k}
	}
	return s
}

// Authenticate hashes the secret and looks the digest up. The map lookup
// branches on digest bytes, which an attacker cannot steer without
// inverting SHA-256; the confirming comparison is constant-time.
func (s *StaticKeys) Authenticate(_ context.Context, secret string) (*Key, error) {
	d := sha256.Sum256([]byte(secret))
	e, ok := s.byDigest[d]
	if !ok || subtle.ConstantTimeCompare(e.digest[:], d[:]) != 1 {
		return nil, nil
	}
	return e.key, nil
}

// secret returns the API key the request presents, from
// "Authorization: Bearer …" or "X-Api-Key: …".
func secret(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}
