// Package clip shortens strings that come from outside (a client's model
// name, a record's error, a config line) before they go into a message or
// a log.
package clip

// String returns s cut to n bytes, with an ellipsis where it was cut.
func String(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
