package gateway

import (
	"context"
	"fmt"
	"net/http"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/keys"
)

// Authenticator finds the identity a secret belongs to. It returns nil
// and no error for an unknown secret; an error means it could not tell.
type Authenticator interface {
	Authenticate(ctx context.Context, secret string) (*keys.Identity, error)
}

// needScope is the 403 for a key without scope.
func needScope(scope, what string) *apierr.Error {
	return &apierr.Error{Code: apierr.CodeForbidden,
		Message: fmt.Sprintf("this API key lacks the scope %q, which %s needs", scope, what)}
}

// authenticate finds the request's key and checks that it holds scope
// (none when scope is ""); unauthenticated requests stop here, before any
// body is read or backend called.
func (s *Server) authenticate(r *http.Request, c *call, scope, what string) error {
	_, span := s.child(r.Context(), "authenticate")
	defer span.End()
	sec := httpapi.Credential(r)
	if sec == "" {
		return apierr.NoKey
	}
	k, err := s.keys.Authenticate(r.Context(), sec)
	if err != nil {
		return apierr.Unavailable("keys cannot be checked", fmt.Errorf("authenticate: %w", err))
	}
	if k == nil {
		return s.FailedAuth(r, apierr.BadKey)
	}
	c.key = k
	if scope != "" && !k.Has(scope) {
		return needScope(scope, what)
	}
	return nil
}
