// Package dashboard holds the usage and billing page obol serves at
// /dashboard: plain HTML, CSS and JavaScript embedded in the binary (no
// build step, no request to another origin), which reads the gateway's
// own APIs with the credential its user typed.
package dashboard

import (
	"embed"
	"path"
	"strings"
)

//go:embed static
var files embed.FS

// CSP is the page's Content-Security-Policy: its own scripts, styles and
// images only, no inline script or style, fetches to its own origin, no
// framing, no forms posted anywhere.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Page is the page itself.
func Page() []byte {
	b, _ := files.ReadFile("static/index.html")
	return b
}

// Asset returns one of the page's files by name (app.js, app.css,
// icon.svg) and its content type; false for any other name.
func Asset(name string) (body []byte, contentType string, ok bool) {
	if name == "" || strings.ContainsAny(name, "/\\") || name == "index.html" {
		return nil, "", false
	}
	b, err := files.ReadFile("static/" + name)
	if err != nil {
		return nil, "", false
	}
	switch path.Ext(name) {
	case ".js":
		contentType = "text/javascript; charset=utf-8"
	case ".css":
		contentType = "text/css; charset=utf-8"
	case ".svg":
		contentType = "image/svg+xml"
	default:
		return nil, "", false
	}
	return b, contentType, true
}
