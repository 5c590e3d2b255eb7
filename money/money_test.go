package money

import (
	"encoding/json"
	"testing"
	"time"
)

func TestMoney(t *testing.T) {
	tests := []struct {
		perMillion float64
		perToken   Money
		ok         bool
	}{
		{0.50, 500_000, true}, {0.05, 50_000, true}, {15, 15_000_000, true}, {0.0375, 37_500, true},
		{0.000001, 1, true}, {0, 0, true}, {-1, 0, false}, {0.0000001, 0, false},
	}
	for _, tt := range tests {
		if got, ok := FromPerMillion(tt.perMillion); got != tt.perToken || ok != tt.ok {
			t.Errorf("FromPerMillion(%v) = %d, %v", tt.perMillion, got, ok)
		}
	}
	for _, tt := range []struct {
		m    Money
		want string
	}{{0, "0"}, {PerDollar, "1"}, {PerDollar * 3 / 2, "1.5"}, {1, "0.000000000001"}, {-2_500_000_000, "-0.0025"}} {
		if got := tt.m.USD(); got != tt.want {
			t.Errorf("%d.USD() = %s, want %s", tt.m, got, tt.want)
		}
		var back Money
		if err := json.Unmarshal([]byte(tt.want), &back); err != nil || back != tt.m {
			t.Errorf("%s read back as %d, %v", tt.want, back, err)
		}
	}
	// A million requests of one token at $0.05/M sum to exactly $0.05.
	var sum Money
	p := &Price{Input: 50_000}
	for i := 0; i < 1_000_000; i++ {
		sum += p.Cost(1, 0, 0)
	}
	if sum.USD() != "0.05" {
		t.Errorf("a million tokens at $0.05/M: %s", sum.USD())
	}
}

// TestPriceAt: a dated price applies from its instant on, to the
// nanosecond; cached tokens are charged at the cached price, the rest of
// the prompt at the input price, reasoning as output.
func TestPriceAt(t *testing.T) {
	change := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	ps := Prices{{From: change, Input: 2}, {Input: 1, CachedInput: 0, Output: 3}}
	ps.Sort()
	if p := ps.At(change.Add(-time.Nanosecond)); p == nil || p.Input != 1 {
		t.Errorf("just before the change: %+v", p)
	}
	if p := ps.At(change); p == nil || p.Input != 2 {
		t.Errorf("at the change: %+v", p)
	}
	if (Prices{}).At(change) != nil {
		t.Error("no prices, a price")
	}
	if c := (&Price{Input: 10, CachedInput: 1, Output: 100}).Cost(50, 20, 7); c != 30*10+20*1+7*100 {
		t.Errorf("cost %d", c)
	}
	if c := (&Price{Input: 10, CachedInput: 1}).Cost(5, 9, 0); c != 5 {
		t.Errorf("more cached than prompt tokens: %d", c)
	}
}

// TestCostAtDayAndMonthBoundary: a request at 23:59:59.999 UTC counts, and
// costs, in its day and month; one at 00:00 in the next, on every store.
