// Package freeport finds a free TCP port on the loopback for a server a
// test starts of its own.
package freeport

import (
	"net"
	"testing"
)

// Get is a port nothing listens on now.
func Get(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
