package models

import "testing"

func TestWithModel(t *testing.T) {
	tests := []struct{ body, want string }{
		{`{"messages":[]}`, `{"model":"b","messages":[]}`},
		{` { "a" : 1 } `, `{"model":"b", "a" : 1 }`},
		{`{}`, `{"model":"b"}`},
		{`{ }`, `{"model":"b" }`},
	}
	for _, tt := range tests {
		if got := string(withModel([]byte(tt.body), "b")); got != tt.want {
			t.Errorf("withModel(%q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

func TestNewCatalog(t *testing.T) {
	b := []Backend{{Name: "x", URL: "http://127.0.0.1:1/v1", Model: "m"}}
	if _, err := NewCatalog([]Model{{Name: "a", ContextWindow: 1, Backends: b}, {Name: "a", ContextWindow: 1, Backends: b}}); err == nil {
		t.Error("duplicate model accepted")
	}
	if _, err := NewCatalog([]Model{{Name: "a", ContextWindow: 1}}); err == nil {
		t.Error("model without backends accepted")
	}
	c, err := NewCatalog([]Model{{Name: "z", ContextWindow: 1, Backends: b}, {Name: "a", ContextWindow: 1, Backends: b}})
	if err != nil {
		t.Fatal(err)
	}
	if c.List()[0].Name != "a" || c.Get("z") == nil || c.Get("q") != nil || c.Get("a").Timeouts != DefaultTimeouts {
		t.Errorf("catalog %+v", c.List())
	}
}
