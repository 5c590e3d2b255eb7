//go:build !unix

package usage

import "os"

// tryLock is a no-op where flock is missing: there, two processes must
// not share a spool directory.
func tryLock(*os.File) error { return nil }
