package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/julienschmidt/httprouter"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/internal/clip"
	"github.com/obol/obol/internal/httpapi"
	"github.com/obol/obol/internal/jsonobj"
	"github.com/obol/obol/keys"
	"github.com/obol/obol/models"
	"github.com/obol/obol/usage"
)

// KeyAdmin creates and changes the keys kept in the store.
type KeyAdmin interface {
	Create(ctx context.Context, s keys.Spec) (*keys.Key, string, error)
	Get(ctx context.Context, id string) (*keys.Key, error)
	List(ctx context.Context) ([]*keys.Key, error)
	Update(ctx context.Context, id string, change func(*keys.Key) error) (*keys.Key, error)
	Revoke(ctx context.Context, id string) (*keys.Key, error)
}

// UsageAdmin reads every key's ledger.
type UsageAdmin interface {
	// Buckets reads usage by time bucket (usage.ErrGrain: too fine).
	Buckets(ctx context.Context, q usage.BucketQuery) ([]usage.BucketRow, error)
	// ByProject is a month's usage by project (only: one).
	ByProject(ctx context.Context, month time.Time, only string) (map[string]usage.Row, error)
}

// keyView is a key as the admin API shows it: never its secret or digest.
type keyView struct {
	ID         string            `json:"id"`
	Object     string            `json:"object"`
	Name       string            `json:"name"`
	Tier       string            `json:"tier"`
	Models     []string          `json:"models"`
	Limits     keys.Limits       `json:"limits"`
	Scopes     []string          `json:"scopes"`
	Project    *string           `json:"project"` // null for none
	Budget     *keys.Budget      `json:"budget"`  // null for none
	Metadata   map[string]string `json:"metadata"`
	Prefix     string            `json:"prefix"`
	Status     string            `json:"status"`     // active, expired, revoked
	Source     string            `json:"source"`     // config (read-only) or api
	CreatedAt  *time.Time        `json:"created_at"` // null for a configuration key
	ExpiresAt  *time.Time        `json:"expires_at"`
	LastUsedAt *time.Time        `json:"last_used_at"`
	RevokedAt  *time.Time        `json:"revoked_at"`
	Secret     string            `json:"secret,omitempty"` // once, at creation
}

func viewOf(k *keys.Key) keyView {
	v := keyView{ID: k.ID, Object: "api_key", Name: k.Name, Tier: k.Tier, Models: k.Models, Limits: k.Limits, Budget: k.Budget,
		Scopes: k.Scopes, Metadata: k.Metadata, Prefix: k.Prefix, ExpiresAt: k.ExpiresAt,
		LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt, Status: "active", Source: "api"}
	if k.Config {
		v.Source = "config"
	} else {
		v.CreatedAt = &k.CreatedAt
	}
	switch {
	case k.RevokedAt != nil:
		v.Status = "revoked"
	case !k.Active(time.Now()):
		v.Status = "expired"
	}
	if v.Models == nil {
		v.Models = []string{}
	}
	if k.Project != "" {
		v.Project = &k.Project
	}
	if k.Budget != nil && k.Budget.AlertAt == nil {
		b := *k.Budget
		b.AlertAt = keys.DefaultAlertAt
		v.Budget = &b
	}
	if v.Metadata == nil {
		v.Metadata = map[string]string{}
	}
	return v
}

// keyRequest is the body of a create or an update. Fields that may be
// cleared (limits, project, budget, expires_at) are read raw, so that
// null (clear) and absent (leave) differ.
type keyRequest struct {
	Name      *string                    `json:"name"`
	Tier      *string                    `json:"tier"`
	Models    *[]string                  `json:"models"`
	Limits    map[string]json.RawMessage `json:"limits"`
	Scopes    *[]string                  `json:"scopes"`
	Project   json.RawMessage            `json:"project"`
	Budget    json.RawMessage            `json:"budget"`
	ExpiresAt json.RawMessage            `json:"expires_at"`
	Metadata  *map[string]string         `json:"metadata"`
}

func decodeKeyRequest(r *http.Request, maxBody int64) (*keyRequest, error) {
	var kr keyRequest
	if err := decodeAdminBody(r, maxBody, &kr, "name, tier, models, limits, scopes, project, budget, expires_at, metadata"); err != nil {
		return nil, err
	}
	return &kr, nil
}

// decodeAdminBody reads an admin request's body, at most 64 KiB: one
// JSON object of the fields named, nothing after it.
func decodeAdminBody(r *http.Request, maxBody int64, dst any, fields string) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, min(maxBody, 64<<10)+1))
	if err != nil {
		var e *apierr.Error
		if errors.As(err, &e) {
			return e // the body did not arrive in time
		}
		return apierr.BadRequest("", "the request body could not be read")
	}
	if int64(len(body)) > min(maxBody, 64<<10) {
		return &apierr.Error{Code: apierr.CodeTooLarge, Message: "an admin request body is at most 64 KiB"}
	}
	if err := jsonobj.ExactNames("", body, dst); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return apierr.BadRequest(jsonField(err), "the body must be a JSON object of "+fields+": "+err.Error())
	}
	if _, err := dec.Token(); err != io.EOF {
		return apierr.BadRequest("", "the body must be one JSON object with nothing after it")
	}
	return nil
}

// jsonField names the field a decoding error is about, where it can.
func jsonField(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return te.Field
	}
	if s := err.Error(); strings.HasPrefix(s, "json: unknown field ") {
		return strings.Trim(strings.TrimPrefix(s, "json: unknown field "), `"`)
	}
	return ""
}

// apply writes the request's fields into k.
func (kr *keyRequest) apply(k *keys.Key, now time.Time) error {
	if kr.Name != nil {
		k.Name = *kr.Name
	}
	if kr.Tier != nil {
		k.Tier = *kr.Tier
	}
	if kr.Models != nil {
		k.Models = *kr.Models
	}
	if kr.Scopes != nil {
		k.Scopes = *kr.Scopes
	}
	if kr.Metadata != nil {
		k.Metadata = *kr.Metadata
	}
	if err := applyLimits(&k.Limits, kr.Limits, "null for the tier's"); err != nil {
		return err
	}
	if err := applyBudget(&k.Budget, kr.Budget); err != nil {
		return err
	}
	if len(kr.Project) > 0 {
		k.Project = ""
		if string(kr.Project) != "null" && (json.Unmarshal(kr.Project, &k.Project) != nil || k.Project == "") {
			return apierr.BadRequest("project", "project is a configured project's id, or null for none")
		}
	}
	if len(kr.ExpiresAt) > 0 {
		if string(kr.ExpiresAt) == "null" {
			k.ExpiresAt = nil
		} else {
			var t time.Time
			if json.Unmarshal(kr.ExpiresAt, &t) != nil {
				return apierr.BadRequest("expires_at", "expires_at is an RFC 3339 time, such as 2027-01-31T00:00:00Z, or null")
			}
			if !t.After(now) {
				return apierr.BadRequest("expires_at", "expires_at must be in the future")
			}
			t = t.UTC()
			k.ExpiresAt = &t
		}
	}
	return nil
}

// applyLimits writes limits read raw into l: a whole number, or null
// (what null means is said in the error).
func applyLimits(l *keys.Limits, raw map[string]json.RawMessage, null string) error {
	for name, v := range raw {
		var dst **int64
		switch name {
		case "rpm":
			dst = &l.RPM
		case "tpm":
			dst = &l.TPM
		case "tpd":
			dst = &l.TPD
		case "concurrency":
			dst = &l.Concurrency
		default:
			return apierr.BadRequest("limits."+name, "the limits are rpm, tpm, tpd and concurrency")
		}
		if string(v) == "null" {
			*dst = nil
			continue
		}
		var n int64
		if json.Unmarshal(v, &n) != nil || n < 0 {
			return apierr.BadRequest("limits."+name, "a limit is a whole number ≥ 0 (0 is unlimited), or "+null)
		}
		*dst = &n
	}
	return nil
}

// adminError maps the registry's errors to answers.
func adminError(err error) error {
	var ie *keys.InvalidError
	switch {
	case errors.As(err, &ie):
		return apierr.BadRequest(ie.Field, ie.Msg)
	case errors.Is(err, keys.ErrNotFound):
		return &apierr.Error{Code: apierr.CodeNotFound, Param: "id", Message: "no such key"}
	case errors.Is(err, keys.ErrConfigured):
		return &apierr.Error{Code: apierr.CodeConflict, Param: "id", Message: "a configuration key: change it in the configuration file"}
	case errors.Is(err, context.Canceled):
		return err
	}
	var e *apierr.Error
	if errors.As(err, &e) {
		return e
	}
	return apierr.Unavailable("the key store cannot be reached", err)
}

// createKey is POST /v1/admin/keys: the answer holds the secret, once.
func (a *API) createKey(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	kr, err := decodeKeyRequest(r, a.maxBody)
	if err != nil {
		return err
	}
	if kr.Tier == nil || *kr.Tier == "" {
		return apierr.BadRequest("tier", "tier is required")
	}
	var k keys.Key
	if err := kr.apply(&k, time.Now()); err != nil {
		return err
	}
	spec := keys.Spec{Name: k.Name, Tier: k.Tier, Models: k.Models, Limits: k.Limits, Project: k.Project, Budget: k.Budget,
		ExpiresAt: k.ExpiresAt, Metadata: k.Metadata}
	if kr.Scopes != nil {
		spec.Scopes = k.Scopes
	}
	created, secret, err := a.keys.Create(r.Context(), spec)
	if err != nil {
		return adminError(err)
	}
	v := viewOf(created)
	v.Secret = secret
	w.Header().Set("Cache-Control", "no-store")
	a.log.Info("key created", "key_id", created.ID, "tier", created.Tier, "name", created.Name)
	return httpapi.WriteJSON(w, http.StatusCreated, v)
}

func (a *API) listKeys(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	ks, err := a.keys.List(r.Context())
	if err != nil {
		return adminError(err)
	}
	list := struct {
		Object string    `json:"object"`
		Data   []keyView `json:"data"`
	}{Object: "list", Data: make([]keyView, 0, len(ks))}
	for _, k := range ks {
		list.Data = append(list.Data, viewOf(k))
	}
	return httpapi.WriteJSON(w, http.StatusOK, list)
}

func (a *API) getKey(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	k, err := a.keys.Get(r.Context(), ps.ByName("id"))
	if err != nil {
		return adminError(err)
	}
	return httpapi.WriteJSON(w, http.StatusOK, viewOf(k))
}

func (a *API) updateKey(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	kr, err := decodeKeyRequest(r, a.maxBody)
	if err != nil {
		return err
	}
	if kr.Tier != nil && *kr.Tier == "" {
		return apierr.BadRequest("tier", "tier cannot be empty")
	}
	k, err := a.keys.Update(r.Context(), ps.ByName("id"), func(k *keys.Key) error {
		if k.RevokedAt != nil {
			return &apierr.Error{Code: apierr.CodeConflict, Message: "the key is revoked; create a new one"}
		}
		return kr.apply(k, time.Now())
	})
	if err != nil {
		return adminError(err)
	}
	a.log.Info("key updated", "key_id", k.ID, "tier", k.Tier)
	return httpapi.WriteJSON(w, http.StatusOK, viewOf(k))
}

func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	k, err := a.keys.Revoke(r.Context(), ps.ByName("id"))
	if err != nil {
		return adminError(err)
	}
	a.log.Info("key revoked", "key_id", k.ID)
	return httpapi.WriteJSON(w, http.StatusOK, viewOf(k))
}

// BackendAdmin reports the backends' run-time state and resets their
// breakers; the models client is one.
type BackendAdmin interface {
	Status(ms []*models.Model) []models.BackendStatus
	Reset(ms []*models.Model, name string) int
}

var errNoBackends = &apierr.Error{Code: apierr.CodeNotImplemented, Message: "this upstream reports no backends"}

// listBackends is GET /v1/admin/backends: every backend's breaker state,
// load and wait.
func (a *API) listBackends(w http.ResponseWriter, r *http.Request, _ httprouter.Params) error {
	ba := a.backends
	if ba == nil {
		return errNoBackends
	}
	list := struct {
		Object string                 `json:"object"`
		Data   []models.BackendStatus `json:"data"`
	}{Object: "list", Data: ba.Status(a.catalog.Load().List())}
	return httpapi.WriteJSON(w, http.StatusOK, list)
}

// resetBackend is POST /v1/admin/backends/{name}/reset: close the
// breakers of the backends of that name (or MODEL/NAME).
func (a *API) resetBackend(w http.ResponseWriter, r *http.Request, ps httprouter.Params) error {
	name, ok := strings.CutSuffix(strings.TrimPrefix(ps.ByName("rest"), "/"), "/reset")
	if !ok || name == "" {
		return apierr.NoRoute
	}
	ba := a.backends
	if ba == nil {
		return errNoBackends
	}
	if ba.Reset(a.catalog.Load().List(), name) == 0 {
		return &apierr.Error{Code: apierr.CodeNotFound, Param: "name", Message: "no backend is named " + clip.String(name, 40)}
	}
	a.log.Info("backend breaker reset", "backend", name)
	var out []models.BackendStatus
	for _, st := range ba.Status(a.catalog.Load().List()) {
		if st.Name == name || st.Model+"/"+st.Name == name {
			out = append(out, st)
		}
	}
	return httpapi.WriteJSON(w, http.StatusOK, struct {
		Object string                 `json:"object"`
		Data   []models.BackendStatus `json:"data"`
	}{"list", out})
}
