// Package httpapi is the plumbing the gateway's and the admin API's
// answers share: JSON bodies, and the credential a request presents.
package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
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
