// Package httpapi is the plumbing the gateway's and the admin API's
// answers share: JSON bodies, and the credential a request presents.
package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/obol/obol/internal/apierr"
	"github.com/obol/obol/usage"
)

// WriteJSON answers with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
	return nil
}

// Credential is the secret the request presents, from "Authorization:
// Bearer …" or "X-Api-Key: …"; "" for none.
func Credential(r *http.Request) string {
	if h := r.Header.Get("Authorization"); h != "" {
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	return strings.TrimSpace(r.Header.Get("X-Api-Key"))
}

// Period is the request's ?period=YYYY-MM (default the current UTC month).
func Period(r *http.Request) (string, error) {
	period := time.Now().UTC().Format("2006-01")
	if q := r.URL.Query(); q.Has("period") {
		p, err := usage.ParsePeriod(q.Get("period"))
		if err != nil {
			return "", apierr.BadRequest("period", "period must be a month as YYYY-MM, such as "+period)
		}
		period = p
	}
	return period, nil
}
