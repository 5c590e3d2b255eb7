package gateway

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/obol/obol/internal/apierr"
)

// FailureGuard counts failed authentications per client address (OWASP
// API2). It is consulted only after a credential failed: a valid one is
// never refused by it, whatever its address has sent before.
type FailureGuard interface {
	// Fail counts a failure from addr and reports whether it is within
	// the address's allowance, and if not, how long until one would be.
	// An error means the shared count could not be reached; the answer
	// is then the replica's own.
	Fail(ctx context.Context, addr string) (allowed bool, wait time.Duration, err error)
}

// FailedAuth is the answer to a bad credential: 401 (e), or 429 once
// the address is past its allowance of failures. The admin API is handed
// it for the admin token and the dashboard's sign-in.
func (s *Server) FailedAuth(r *http.Request, e *apierr.Error) *apierr.Error {
	s.metrics.authFail.Add(r.Context(), 1)
	ok, wait, err := s.guard.Fail(r.Context(), clientAddr(r))
	if err != nil {
		s.log.Warn("failed authentications counted per replica: the shared count cannot be reached", "err", err)
	}
	if ok {
		return e
	}
	return tooManyFailures(wait)
}

func tooManyFailures(wait time.Duration) *apierr.Error {
	return &apierr.Error{Code: apierr.CodeRateLimit, RetryAfter: max(wait, time.Second),
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
