package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/obol/obol/internal/clip"
	"gopkg.in/yaml.v3"
)

// Reading the configuration: environment references expanded before
// decoding, unknown keys refused, YAML errors quoted with the lines they
// point at, and the error a refused configuration exits with.

// configError is a configuration the gateway refuses; it exits 2.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

func invalid(field, format string, args ...any) error {
	return &configError{msg: "config: " + field + ": " + fmt.Sprintf(format, args...)}
}

// oneOf checks that *v is one of the allowed values; empty takes def.
func oneOf(field string, v *string, def string, allowed ...string) error {
	if *v == "" {
		*v = def
		return nil
	}
	if !slices.Contains(allowed, *v) {
		last := len(allowed) - 1
		return invalid(field, "want %s or %s, got %q", strings.Join(allowed[:last], ", "), allowed[last], *v)
	}
	return nil
}

// loadConfig decodes and checks a configuration; unknown keys are refused.
func loadConfig(r io.Reader, getenv func(string) string) (*Config, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	expanded := expandEnv(raw, getenv)
	dec := yaml.NewDecoder(bytes.NewReader(expanded))
	dec.KnownFields(true)
	var c Config
	if err := dec.Decode(&c); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &configError{msg: "config: the file is empty"}
		}
		return nil, &configError{msg: "config: " + withSource(err.Error(), raw)}
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	return &c, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${VAR} and ${VAR:-default} with the environment's
// values. An unset variable without a default becomes empty, as in a shell.
func expandEnv(b []byte, getenv func(string) string) []byte {
	return envRef.ReplaceAllFunc(b, func(m []byte) []byte {
		sub := envRef.FindSubmatch(m)
		if v := getenv(string(sub[1])); v != "" {
			return []byte(v)
		}
		return sub[3]
	})
}

var yamlLine = regexp.MustCompile(`line (\d+): `)

// withSource quotes the source line each "line N:" of a YAML error points
// at, since yaml.v3's type errors name the line but not the field.
func withSource(msg string, src []byte) string {
	lines := strings.Split(string(src), "\n")
	return yamlLine.ReplaceAllStringFunc(msg, func(m string) string {
		var n int
		fmt.Sscanf(m, "line %d", &n)
		if n < 1 || n > len(lines) {
			return m
		}
		return fmt.Sprintf("line %d (%s): ", n, clip.String(strings.TrimSpace(lines[n-1]), 80))
	})
}

// redactURL hides a URL's password.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparseable)"
	}
	return u.Redacted()
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
