package gateway

import (
	"testing"
	"time"
)

// TestRefusalsPerSecond: at most refusalsPerSecond refusals a second go
// to the request log; the next second takes as many again.
func TestRefusalsPerSecond(t *testing.T) {
	var p perSecond
	now := time.Unix(1_800_000_000, 0)
	taken := 0
	for range refusalsPerSecond + 50 {
		if p.take(now) {
			taken++
		}
	}
	if taken != refusalsPerSecond || !p.take(now.Add(time.Second)) {
		t.Errorf("took %d in a second, want %d, then more the next", taken, refusalsPerSecond)
	}
}
