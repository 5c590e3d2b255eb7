package gateway

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"

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
		return errNoKey
	}
	k, err := s.keys.Authenticate(r.Context(), sec)
	if err != nil {
		return apierr.Unavailable("keys cannot be checked", fmt.Errorf("authenticate: %w", err))
	}
	if k == nil {
		return s.failedAuth(r, errBadKey)
	}
	c.key = k
	if scope != "" && !k.Has(scope) {
		return needScope(scope, what)
	}
	return nil
}

// admin wraps an admin handler: the admin token, and nothing else, opens
// it. An API key is refused whatever its scopes, so that a leaked key
// cannot make itself more keys.
func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, ps httprouter.Params, c *call) error {
		if !s.adminToken.Set() || s.admins == nil {
			return &apierr.Error{Code: apierr.CodeForbidden,
				Message: "the admin API is off: start the gateway with OBOL_ADMIN_TOKEN set"}
		}
		tok := httpapi.Credential(r)
		if tok == "" {
			return &apierr.Error{Code: apierr.CodeUnauthorized, Message: "missing admin token: send Authorization: Bearer <OBOL_ADMIN_TOKEN>"}
		}
		if !s.adminToken.Matches(tok) {
			msg := "invalid admin token"
			if strings.HasPrefix(tok, "sk-") {
				msg = "admin routes take the admin token, not an API key"
			}
			return s.failedAuth(r, &apierr.Error{Code: apierr.CodeUnauthorized, Message: msg})
		}
		return h(w, r, ps, c)
	}
}
