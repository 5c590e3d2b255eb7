package gateway

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/obol/obol/quota"
)

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
	return &Error{Code: CodeRateLimit, RetryAfter: max(wait, time.Second),
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
