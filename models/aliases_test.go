package models

import (
	"strings"
	"testing"
)

func aliased(name string, aliases ...string) Model {
	return Model{Name: name, ContextWindow: 100, Aliases: aliases, Backends: []Backend{{Name: "b", URL: "http://127.0.0.1:1/v1", Model: "m"}}}
}

// TestAliases: a name is itself first, then an exact alias, then the
// longest prefix alias that begins it; a clash is refused.
func TestAliases(t *testing.T) {
	c, err := NewCatalog([]Model{aliased("hermes", "claude-haiku-4-5", "claude-*"), aliased("pluto", "claude-sonnet-*")})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{
		"hermes": "hermes", "pluto": "pluto", "claude-haiku-4-5": "hermes", "claude-sonnet-4-5-20250929": "pluto",
		"claude-opus-4": "hermes", "gpt-4o": "",
	} {
		got := ""
		if m := c.Get(name); m != nil {
			got = m.Name
		}
		if got != want {
			t.Errorf("Get(%q) = %q, want %q", name, got, want)
		}
	}
	for _, tt := range []struct {
		ms   []Model
		want string
	}{
		{[]Model{aliased("hermes", "pluto"), aliased("pluto")}, "a model's name"},
		{[]Model{aliased("hermes", "x"), aliased("pluto", "x")}, "also hermes's"},
		{[]Model{aliased("hermes", "a*b")}, "prefix ending in one *"},
	} {
		if _, err := NewCatalog(tt.ms); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.ms, err, tt.want)
		}
	}
}
