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
		sum += p.Cost(Tokens{Prompt: 1})
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
	if c := (&Price{Input: 10, CachedInput: 1, Output: 100}).Cost(Tokens{Prompt: 50, Cached: 20, Completion: 7}); c != 30*10+20*1+7*100 {
		t.Errorf("cost %d", c)
	}
	if c := (&Price{Input: 10, CachedInput: 1}).Cost(Tokens{Prompt: 5, Cached: 9}); c != 5 {
		t.Errorf("more cached than prompt tokens: %d", c)
	}
}

// TestCostAtDayAndMonthBoundary: a request at 23:59:59.999 UTC counts, and
// costs, in its day and month; one at 00:00 in the next, on every store.

// TestCacheWriteCost: each part of a prompt at its own price, parts cut to
// the prompt, and the defaults' rounding.
func TestCacheWriteCost(t *testing.T) {
	p := &Price{Input: 3_000_000, CachedInput: 300_000, CacheWrite: 3_750_000, CacheWrite1h: 6_000_000, Output: 15_000_000}
	// 1,000 prompt tokens: 100 read, 200 written for 5 minutes, 300 for an hour, 400 uncached.
	want := Money(400*3_000_000 + 100*300_000 + 200*3_750_000 + 300*6_000_000 + 50*15_000_000)
	if c := p.Cost(Tokens{Prompt: 1000, Cached: 100, Write5m: 200, Write1h: 300, Completion: 50}); c != want {
		t.Errorf("cost %d, want %d", c, want)
	}
	// Parts past the prompt are cut: 10 read, 5 of the 20 writes fit.
	if c := p.Cost(Tokens{Prompt: 15, Cached: 10, Write5m: 20, Write1h: 7}); c != 10*300_000+5*3_750_000 {
		t.Errorf("cost %d", c)
	}
	for _, c := range []struct {
		m        Money
		num, den int64
		want     Money
	}{{3_000_000, 5, 4, 3_750_000}, {1, 5, 4, 1}, {2, 5, 4, 3}, {3, 5, 4, 4}, {7, 2, 1, 14}} {
		if got := c.m.Times(c.num, c.den); got != c.want {
			t.Errorf("%d × %d/%d = %d, want %d", c.m, c.num, c.den, got, c.want)
		}
	}
}
