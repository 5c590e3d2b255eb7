package dashboard

import (
	"bytes"
	"strings"
	"testing"
)

// TestAssets: the page's own files are served with their types; nothing
// else is, whatever the name.
func TestAssets(t *testing.T) {
	for name, want := range map[string]string{"app.js": "text/javascript", "app.css": "text/css", "icon.svg": "image/svg+xml"} {
		b, ct, ok := Asset(name)
		if !ok || !strings.HasPrefix(ct, want) || len(b) == 0 {
			t.Errorf("%s: %v %q", name, ok, ct)
		}
	}
	for _, name := range []string{"", "index.html", "../dashboard.go", "static/app.js", "app.js/", "nope.js", "dashboard.go"} {
		if _, _, ok := Asset(name); ok {
			t.Errorf("%q was served", name)
		}
	}
	page := Page()
	if !bytes.Contains(page, []byte(`<script src="/dashboard/assets/app.js" defer></script>`)) || bytes.Contains(page, []byte("<script>")) {
		t.Error("the page does not load its script from a file, or has an inline one")
	}
}
