// Package poll waits in tests for state that other goroutines or
// processes reach on their own (a record written, a breaker opened), not
// for timing: the bound only stops a test that would otherwise hang.
package poll

import (
	"testing"
	"time"
)

// Bound is how long Until waits before it fails the test.
const Bound = 10 * time.Second

// Until polls cond until it holds, or fails the test after Bound.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Bound)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Try polls cond until it holds, reporting true, or for Bound, reporting
// false: for a test that says what it saw when it fails.
func Try(cond func() bool) bool {
	deadline := time.Now().Add(Bound)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}
