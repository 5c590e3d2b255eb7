package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/obol/obol/keys"
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
	// Scopes are what the key may do (keys.Scope*); nil means everything,
	// as for the keys of the configuration file.
	Scopes []string
}

// Has reports whether the key holds scope; chat implies chat:stream.
func (k *Key) Has(scope string) bool {
	if k.Scopes == nil {
		return true
	}
	for _, s := range k.Scopes {
		if s == scope || (s == keys.ScopeChat && scope == keys.ScopeChatStream) {
			return true
		}
	}
	return false
}

// needScope is the 403 for a key without scope.
func needScope(scope, what string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden",
		Message: fmt.Sprintf("this API key lacks the scope %q, which %s needs", scope, what)}
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

// authGuard slows down clients that keep presenting bad credentials
// (OWASP API2): past a burst of failures from one address, its requests
// are refused before any key is looked up, until the failures age out.
// It counts per replica.
type authGuard struct {
	fails   *quota.Memory
	limit   quota.Limits
	mu      sync.Mutex
	blocked map[string]time.Time // address → until
}

// authFailuresPerMinute is how many bad credentials one address may
// present a minute, all at once or spread.
const authFailuresPerMinute = 20

func newAuthGuard() *authGuard {
	return &authGuard{fails: quota.NewMemory(), limit: quota.Limits{RPM: authFailuresPerMinute}, blocked: map[string]time.Time{}}
}

// check refuses an address that is blocked.
func (g *authGuard) check(r *http.Request) error {
	g.mu.Lock()
	if len(g.blocked) == 0 {
		g.mu.Unlock()
		return nil
	}
	addr := clientAddr(r)
	until, ok := g.blocked[addr]
	now := time.Now()
	if ok && !now.Before(until) {
		delete(g.blocked, addr)
		ok = false
	}
	g.mu.Unlock()
	if !ok {
		return nil
	}
	return tooManyFailures(until.Sub(now))
}

// failed counts a bad credential; past the allowance the address is
// blocked until it is back under it.
func (g *authGuard) failed(r *http.Request) {
	addr := clientAddr(r)
	d, _ := g.fails.Admit(r.Context(), addr, g.limit, 0)
	if d.Allowed {
		return
	}
	g.mu.Lock()
	if len(g.blocked) > 100_000 { // an address flood: start over rather than grow
		g.blocked = map[string]time.Time{}
	}
	g.blocked[addr] = time.Now().Add(d.RetryAfter)
	g.mu.Unlock()
}

func tooManyFailures(wait time.Duration) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "rate_limit", RetryAfter: max(wait, time.Second),
		Message: "too many failed authentications from this address; retry later with a valid key"}
}

// clientAddr is the connection's address: forwarded headers are not
// trusted, since any client can set them.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
