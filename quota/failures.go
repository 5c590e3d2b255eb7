package quota

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
)

// FailureLimit is how many failed authentications one client address may
// make: Burst at once, then PerMinute a minute, refilling continuously
// (GCRA). In any minute an address makes at most Burst + PerMinute.
type FailureLimit struct {
	Burst     int
	PerMinute int
}

// DefaultFailureLimit: a burst of 10, then one every 6 s; at most 20 in
// any minute.
var DefaultFailureLimit = FailureLimit{Burst: 10, PerMinute: 10}

// Failures counts failed authentications per address in process, for one
// replica. Its memory is bounded: addresses whose allowance is full again
// are forgotten, and past maxAddresses it starts over.
type Failures struct {
	limit FailureLimit
	now   func() time.Time

	mu      sync.Mutex
	tat     map[string]float64 // address → theoretical arrival time, unix s
	inserts int
}

// maxAddresses bounds the addresses held (about 100 bytes each).
const maxAddresses = 100_000

// NewFailures returns an in-process failure counter.
func NewFailures(l FailureLimit) *Failures {
	return &Failures{limit: l, now: time.Now, tat: map[string]float64{}}
}

// Fail counts a failed attempt from addr. It reports whether the attempt
// is within the allowance, and if not, how long until one would be.
func (f *Failures) Fail(_ context.Context, addr string) (bool, time.Duration, error) {
	now := float64(f.now().UnixNano()) / 1e9
	step := 60 / float64(f.limit.PerMinute)
	f.mu.Lock()
	defer f.mu.Unlock()
	tat, ok := f.tat[addr]
	if !ok {
		f.sweepLocked(now)
	}
	tat = math.Max(tat, now) + step
	if allowAt := tat - float64(f.limit.Burst)*step; now < allowAt {
		return false, time.Duration((allowAt - now) * 1e9), nil
	}
	f.tat[addr] = tat
	return true, 0, nil
}

// sweepLocked forgets, every 1024 new addresses or when over the bound,
// the addresses whose allowance has refilled: they are as good as unseen.
func (f *Failures) sweepLocked(now float64) {
	f.inserts++
	if f.inserts%1024 != 0 && len(f.tat) < maxAddresses {
		return
	}
	for a, t := range f.tat {
		if t <= now {
			delete(f.tat, a)
		}
	}
	if len(f.tat) >= maxAddresses {
		f.tat = map[string]float64{} // a flood of addresses: start over rather than grow
	}
}

// Len is how many addresses are held (tests, metrics).
func (f *Failures) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.tat)
}

// SharedFailures counts failed authentications per address in Redis, so
// that every replica sees the same count (redis_rate's GCRA, one script
// call). While Redis cannot be reached, each replica counts on its own.
type SharedFailures struct {
	lim    *redis_rate.Limiter
	limit  redis_rate.Limit
	prefix string
	local  *Failures
}

// NewSharedFailures counts in rdb under prefix: every key it writes
// starts with it (redis_rate's own "rate:" follows it).
func NewSharedFailures(rdb redis.UniversalClient, prefix string, l FailureLimit) *SharedFailures {
	return &SharedFailures{
		lim:    redis_rate.NewLimiter(prefixed{rdb, prefix}),
		limit:  redis_rate.Limit{Rate: l.PerMinute, Burst: l.Burst, Period: time.Minute},
		prefix: "authfail:",
		local:  NewFailures(l),
	}
}

// prefixed puts prefix before the keys of redis_rate's scripts, which
// start theirs with its own "rate:".
type prefixed struct {
	redis.UniversalClient
	prefix string
}

func (p prefixed) keys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = p.prefix + k
	}
	return out
}

func (p prefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.UniversalClient.Eval(ctx, script, p.keys(keys), args...)
}

func (p prefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.UniversalClient.EvalSha(ctx, sha1, p.keys(keys), args...)
}

func (p prefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return p.UniversalClient.EvalRO(ctx, script, p.keys(keys), args...)
}

func (p prefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return p.UniversalClient.EvalShaRO(ctx, sha1, p.keys(keys), args...)
}

func (p prefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return p.UniversalClient.Del(ctx, p.keys(keys)...)
}

// Fail counts a failed attempt from addr, as Failures.Fail does.
func (f *SharedFailures) Fail(ctx context.Context, addr string) (bool, time.Duration, error) {
	res, err := f.lim.Allow(ctx, f.prefix+addr, f.limit)
	if err != nil {
		ok, wait, _ := f.local.Fail(ctx, addr)
		return ok, wait, err
	}
	return res.Allowed > 0, res.RetryAfter, nil
}
