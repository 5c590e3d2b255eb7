// Package money is obol's integer money (picodollars) and prices: what a
// token costs, and when a price applies.
package money

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"strconv"
	"time"
)

// Money is an amount in picodollars (1e-12 USD), obol's integer unit of
// money: a token's price at any price quoted to the millionth of a dollar
// per million tokens is a whole number of them, so a request's cost is
// exact, and sums of millions of requests do not drift. An int64 holds up
// to about $9.2 million.
type Money int64

// PerDollar is how many units make a US dollar.
const PerDollar Money = 1_000_000_000_000

// FromPerMillion converts a price in USD per million tokens to a price
// per token; ok is false for a negative price or one finer than a
// millionth of a dollar per million tokens.
func FromPerMillion(usdPerMillion float64) (Money, bool) {
	v := usdPerMillion * 1e6 // picodollars per token
	r := math.Round(v)
	if usdPerMillion < 0 || math.Abs(v-r) > 1e-6*math.Max(1, math.Abs(v)) || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return Money(r), true
}

// USD is the amount in dollars as a JSON number, exact: no float on the
// way ("0.000123", "12.5", "0").
func (m Money) USD() string {
	neg := m < 0
	if neg {
		m = -m
	}
	whole, frac := m/PerDollar, m%PerDollar
	s := strconv.FormatInt(int64(whole), 10)
	if frac != 0 {
		f := fmt.Sprintf("%012d", int64(frac))
		for f[len(f)-1] == '0' {
			f = f[:len(f)-1]
		}
		s += "." + f
	}
	if neg {
		s = "-" + s
	}
	return s
}

// MarshalJSON writes the amount in USD, exactly.
func (m Money) MarshalJSON() ([]byte, error) { return []byte(m.USD()), nil }

// UnmarshalJSON reads an amount in USD, exactly (to the picodollar).
func (m *Money) UnmarshalJSON(b []byte) error {
	v, err := ParseUSD(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseUSD reads a decimal amount of dollars ("12.5", "-0.000123"),
// exactly; finer than a picodollar is an error.
func ParseUSD(s string) (Money, error) {
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return 0, fmt.Errorf("amount %q: not a number", s)
	}
	r.Mul(r, new(big.Rat).SetInt64(int64(PerDollar)))
	if !r.IsInt() || !r.Num().IsInt64() {
		return 0, fmt.Errorf("amount %q: finer than a picodollar, or too large", s)
	}
	return Money(r.Num().Int64()), nil
}

// Price is what a model's tokens cost from a time on, per token.
type Price struct {
	From        time.Time // zero: from the start
	Input       Money     // an uncached prompt token
	CachedInput Money     // a prompt token read from the backend's cache
	// CacheWrite and CacheWrite1h are a prompt token written to the
	// backend's cache for five minutes and for an hour (Anthropic's
	// prompt caching).
	CacheWrite, CacheWrite1h Money
	Output                   Money // a completion token, reasoning included
}

// Tokens are a request's tokens by how they are priced. Cached, Write5m
// and Write1h are parts of Prompt; reasoning is within Completion and
// priced as it.
type Tokens struct {
	Prompt, Cached, Write5m, Write1h, Completion int64
}

// Uncached is the prompt tokens neither read from a cache nor written to
// one; parts that add up to more than the prompt are cut to fit it, in
// the order cached, 5-minute writes, 1-hour writes.
func (t Tokens) Uncached() (uncached, cached, w5, w1 int64) {
	left := max(t.Prompt, 0)
	take := func(n int64) int64 {
		n = min(max(n, 0), left)
		left -= n
		return n
	}
	cached, w5, w1 = take(t.Cached), take(t.Write5m), take(t.Write1h)
	return left, cached, w5, w1
}

// Cost is what a request's tokens cost at p (nil: nothing): uncached
// prompt tokens at Input, cache reads at CachedInput, cache writes at
// their lifetime's price, completion tokens at Output.
func (p *Price) Cost(t Tokens) Money {
	if p == nil {
		return 0
	}
	uncached, cached, w5, w1 := t.Uncached()
	return Money(uncached)*p.Input + Money(cached)*p.CachedInput + Money(w5)*p.CacheWrite +
		Money(w1)*p.CacheWrite1h + Money(t.Completion)*p.Output
}

// Most is the most t's tokens can cost at p: every prompt token at the
// dearest of the uncached and cache-read prices, and of the cache-write
// prices too where writes can be billed.
func (p *Price) Most(t Tokens, writes bool) Money {
	if p == nil {
		return 0
	}
	per := max(p.Input, p.CachedInput)
	if writes {
		per = max(per, p.CacheWrite, p.CacheWrite1h)
	}
	return Money(max(t.Prompt, 0))*per + Money(t.Completion)*p.Output
}

// Times is m × num/den, rounded to the nearest unit (halves up): a
// default price derived from another, such as 1.25 × input.
func (m Money) Times(num, den int64) Money {
	return (m*Money(num)*2 + Money(den)) / (2 * Money(den))
}

// Prices are a model's prices in time order: each from its From until
// the next's.
type Prices []Price

// Sort orders the prices by From.
func (ps Prices) Sort() { sort.Slice(ps, func(i, j int) bool { return ps[i].From.Before(ps[j].From) }) }

// At is the price in effect at t (nil: no price, the tokens cost
// nothing): the last whose From is not after t.
func (ps Prices) At(t time.Time) *Price {
	var p *Price
	for i := range ps {
		if ps[i].From.After(t) {
			break
		}
		p = &ps[i]
	}
	return p
}
