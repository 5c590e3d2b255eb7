package main

import (
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/obol/obol/keys"
)

// AdminTokenConfig is an admin token the configuration holds by its
// digest, so that a token is rolled out (and, on reload, removed) with
// the file.
type AdminTokenConfig struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// checkAdminTokens checks the configuration's admin tokens: each named
// once, each a SHA-256 digest.
func (c *Config) checkAdminTokens() error {
	names := map[string]bool{}
	for i, t := range c.AdminTokens {
		f := fmt.Sprintf("admin_tokens[%d]", i)
		if t.Name == "" || strings.ContainsAny(t.Name, ",= ") {
			return invalid(f+".name", "required: a name for the access log and audit records, without ',', '=' or spaces")
		}
		if names[t.Name] {
			return invalid(f+".name", "%q is used twice", t.Name)
		}
		names[t.Name] = true
		if d, err := hex.DecodeString(t.SHA256); err != nil || len(d) != 32 {
			return invalid(f+".sha256", "want the 64 hex digits of the token's SHA-256 (printf %%s \"$TOKEN\" | sha256sum)")
		}
	}
	return nil
}

// adminTokensOf are the admin tokens: OBOL_ADMIN_TOKEN (named "default"),
// OBOL_ADMIN_TOKENS (name=token, comma-separated), and the
// configuration's admin_tokens. Each token given in the environment must
// be hard to guess; names are unique.
func adminTokensOf(c *Config, getenv func(string) string) (*keys.AdminTokens, error) {
	var list []keys.AdminTokenDigest
	names := map[string]bool{}
	add := func(where, name, secret string) error {
		if names[name] {
			return fmt.Errorf("%s: the name %q is used twice", where, name)
		}
		if err := keys.CheckAdminToken(secret); err != nil {
			if where == "OBOL_ADMIN_TOKENS" {
				where += " (" + name + ")"
			}
			return fmt.Errorf("%s: %w", where, err)
		}
		names[name] = true
		list = append(list, keys.AdminTokenOf(name, secret))
		return nil
	}
	if tok := getenv("OBOL_ADMIN_TOKEN"); tok != "" {
		if err := add("OBOL_ADMIN_TOKEN", "default", tok); err != nil {
			return nil, err
		}
	}
	for i, entry := range strings.Split(getenv("OBOL_ADMIN_TOKENS"), ",") {
		if entry = strings.TrimSpace(entry); entry == "" {
			continue
		}
		name, secret, ok := strings.Cut(entry, "=")
		if !ok || name == "" || secret == "" {
			return nil, fmt.Errorf("OBOL_ADMIN_TOKENS: entry %d: want name=token", i+1)
		}
		if err := add("OBOL_ADMIN_TOKENS", name, secret); err != nil {
			return nil, err
		}
	}
	for _, t := range c.AdminTokens {
		if names[t.Name] {
			return nil, fmt.Errorf("admin_tokens: the name %q is also an environment token's", t.Name)
		}
		d := keys.AdminTokenDigest{Name: t.Name}
		hex.Decode(d.SHA256[:], []byte(strings.ToLower(t.SHA256)))
		list = append(list, d)
	}
	return keys.NewAdminTokens(list...), nil
}
