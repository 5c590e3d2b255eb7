package quota

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis admits and settles in a Redis shared by every replica.
type Redis struct {
	rdb    redis.UniversalClient
	pipe   Pipelines // rdb, or a batcher shared with other writers
	admits Pipelines // nil (a command each), or a batcher that sends concurrent admissions together
	prefix string
	money  Money
	// now, when set, replaces Redis TIME (tests); the TPD day is always
	// taken from now or the local clock.
	now func() time.Time
	// marker is this replica's key in Redis, there while Redis keeps what
	// it was given: missing, Redis lost the leases (LeasesLost).
	marker string
}

// NewRedis returns a limiter over rdb; every key starts with prefix.
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, pipe: rdb, prefix: prefix, marker: prefix + "replica:" + newLease()}
}

// markerTTL is how long a replica's marker outlives its last renewal.
const markerTTL = 24 * time.Hour

// Pipelines runs pipelines: the Redis client itself, or a batcher that
// sends other writers' commands in the same round trip.
type Pipelines interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// SetPipelines sends the batched writes through p.
func (r *Redis) SetPipelines(p Pipelines) { r.pipe = p }

// SetAdmissions sends admissions through p: one that waits for no
// linger, or every request waits for it.
func (r *Redis) SetAdmissions(p Pipelines) { r.admits = p }

// SetMoney gives budgets their ledger and listener.
func (r *Redis) SetMoney(m Money) { r.money = m }

// perLevel is how many keys each level has in admitScript.
const perLevel = 5

// keys returns the keys of each of a subject's levels (rpm, tpm, tpd of
// the day, leases, spend of the month), hash-tagged alike so that a Redis
// Cluster keeps them in one slot: on the key, or on its project when it
// has one (a key that changes project starts with fresh counters there).
func (r *Redis) keys(s Subject, day, month string) []string { return r.keysOf(s, day, month, false) }

// keysOf is keys, with each level's slices (the registry of the slices
// replicas hold) after its five when slices is set.
func (r *Redis) keysOf(s Subject, day, month string, slices bool) []string {
	tag := s.Key
	if s.Project != "" {
		tag = "project:" + s.Project
	}
	var out []string
	ls, n := s.levels()
	for _, l := range ls[:n] {
		base := r.prefix + "{" + tag + "}:"
		if l.id != tag {
			base += l.id + ":"
		}
		out = append(out, base+"rpm", base+"tpm", base+"tpd:"+day, base+"leases", base+"spend:"+month)
		if slices {
			out = append(out, base+"slices")
		}
	}
	return out
}

func (r *Redis) clock() (time.Time, string) {
	if r.now != nil {
		t := r.now()
		return t, strconv.FormatFloat(float64(t.UnixMicro())/1e6-epoch, 'f', 6, 64)
	}
	return time.Now(), ""
}

// Admit reserves tokens and a cost bound (picodollars) for the subject at
// every level, all or nothing.
func (r *Redis) Admit(ctx context.Context, sub Subject, tokens, cost int64) (Decision, error) {
	return r.admit(ctx, sub, tokens, cost, false)
}

// Peek reports the subject's allowances without reserving anything.
func (r *Redis) Peek(ctx context.Context, sub Subject) (Decision, error) {
	return r.admit(ctx, sub, 0, 0, true)
}

// Ping reports whether Redis answers.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

func (r *Redis) admit(ctx context.Context, sub Subject, tokens, cost int64, dry bool) (Decision, error) {
	now, nowArg := r.clock()
	d, left := day(now)
	mo, moLeft := month(now)
	dryArg := "0"
	if dry {
		dryArg = "1"
	}
	lease := ""
	if sub.leased() && !dry {
		lease = newLease()
	}
	ls, nl := sub.levels()
	levels := ls[:nl]
	args := []any{nowArg, tokens, left.Seconds(), dryArg, lease, LeaseTTL.Seconds(), cost, moLeft.Seconds(),
		int64(math.Ceil(left.Seconds())) + 3600, int64(math.Ceil(LeaseTTL.Seconds())) + 60}
	for _, l := range levels {
		strict := "0"
		if l.lim.StrictBudget {
			strict = "1"
		}
		args = append(args, l.lim.RPM, l.lim.TPM, l.lim.TPD, l.lim.Concurrency, l.lim.Budget, strict)
	}
	keys := r.keys(sub, d, mo)
	res, err := r.admitOnce(ctx, keys, args)
	if err == nil && len(res) > 0 && res[0] == int64(-1) {
		if err = r.seed(ctx, sub, keys, d, mo, left, moLeft); err == nil {
			res, err = r.admitOnce(ctx, keys, args)
		}
	}
	if err != nil {
		return Decision{}, fmt.Errorf("admit %s: %w", sub.Key, err)
	}
	if len(res) != 4+9*len(levels) {
		return Decision{}, fmt.Errorf("admit %s: script returned %d values", sub.Key, len(res))
	}
	dec := decision(res, len(levels))
	if dec.Allowed && !dry {
		dec.Reservation = &Reservation{Subject: sub, Day: d, Month: mo, Tokens: tokens, Cost: cost, Lease: lease}
	}
	return dec, nil
}

// admitOnce runs admitScript, in a pipeline other admissions may share
// when there is a batcher for them.
func (r *Redis) admitOnce(ctx context.Context, keys []string, args []any) ([]any, error) {
	if r.admits == nil {
		// Once sent, an admission is waited for whatever the caller does:
		// if it reserved, its caller must know to settle it.
		ctx, cancel := uncancelled(ctx)
		defer cancel()
		return admitScript.Run(ctx, r.rdb, keys, args...).Slice()
	}
	var res []any
	err := r.evalEach(ctx, r.admits, admitScript, []scriptCall{{keys: keys, args: args}}, func(_ int, val any) {
		res, _ = val.([]any)
	})
	if err == nil && res == nil {
		err = errors.New("admission script: no answer")
	}
	return res, err
}

// uncancelled is ctx without its cancellation, keeping its deadline.
func uncancelled(ctx context.Context) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok {
		return context.WithDeadline(context.WithoutCancel(ctx), dl)
	}
	return context.WithCancel(context.WithoutCancel(ctx))
}

// decision reads admitScript's answer.
func decision(res []any, levels int) Decision {
	n := func(i int) int64 {
		if s, ok := res[i].(string); ok {
			v, _ := strconv.ParseInt(s, 10, 64)
			return v
		}
		v, _ := res[i].(int64)
		return v
	}
	us := func(i int) time.Duration { return time.Duration(n(i)) * time.Microsecond }
	figures := func(i int) Decision {
		return Decision{
			RequestsRemaining: n(i),
			RequestsReset:     us(i + 1),
			TokensUsed:        n(i + 2),
			TokensRemaining:   n(i + 3),
			TokensReset:       us(i + 4),
			DailyUsed:         n(i + 5),
			InFlight:          n(i + 6),
			Spent:             n(i + 7),
			Held:              n(i + 8),
		}
	}
	dec := figures(4)
	if levels > 1 {
		p := figures(13)
		dec.Project = &p
	}
	dec.Denied, dec.ByProject = Limit(n(0)), n(1) == 1
	dec.RetryAfter, dec.Hopeless = us(2), n(3) == 1
	dec.Allowed = dec.Denied == None
	return dec
}

// seed starts the subject's missing counters from the ledger: the
// spend of month at each level with a budget, and the tokens of day at
// each level with a TPD. Counters Redis holds are left as they are.
func (r *Redis) seed(ctx context.Context, sub Subject, keys []string, day, mo string, dayLeft, moLeft time.Duration) error {
	var spends, days []string
	var spent, used []any
	err := r.money.eachSpent(ctx, sub, mo, func(i int, _ level, v int64) {
		spends, spent = append(spends, keys[perLevel*i+4]), append(spent, v)
	})
	if err != nil {
		return err
	}
	err = r.money.eachUsed(ctx, sub, day, func(i int, v int64) {
		days, used = append(days, keys[perLevel*i+2]), append(used, v)
	})
	if err != nil {
		return err
	}
	args := append(append(append([]any{len(spends)}, spent...), used...),
		int64(math.Ceil(moLeft.Seconds()))+86400, int64(math.Ceil(dayLeft.Seconds()))+3600)
	return seedScript.Run(ctx, r.rdb, append(spends, days...), args...).Err()
}

// Renew extends the leases of reservations by LeaseTTL, all in one
// pipelined round trip; a lease already gone stays gone, unless Redis
// lost every lease since this replica last renewed (its marker is
// missing: flushed, restarted empty, replaced), and then each is
// registered again with the money it holds, so that concurrency caps
// and budgets count the requests in flight again.
func (r *Redis) Renew(ctx context.Context, res ...*Reservation) error {
	_, nowArg := r.clock()
	err := r.rdb.SetArgs(ctx, r.marker, "1", redis.SetArgs{TTL: markerTTL, Get: true}).Err()
	again := errors.Is(err, redis.Nil)
	if err != nil && !again {
		return fmt.Errorf("renew leases: %w", err)
	}
	var calls []scriptCall
	for _, rs := range res {
		if rs != nil && rs.Lease != "" {
			keys, args := r.renewArgs(rs, nowArg, again)
			calls = append(calls, scriptCall{keys: keys, args: args})
		}
	}
	if err := r.evalEach(ctx, r.rdb, renewScript, calls, nil); err != nil {
		return fmt.Errorf("renew %d leases: %w", len(calls), err)
	}
	return nil
}

// scriptCall is one call of a script: its KEYS and ARGV, and the script
// when it is not the one the pipeline runs for the others.
type scriptCall struct {
	keys   []string
	args   []any
	script *redis.Script
}

// of is the script c calls, where the pipeline runs script.
func (c scriptCall) of(script *redis.Script) *redis.Script {
	if c.script != nil {
		return c.script
	}
	return script
}

// evalEach runs script once per call in one pipeline through p (one round
// trip; one per node on a Cluster). A script call need not be idempotent,
// so only the calls Redis did not run because it had lost the script
// (NOSCRIPT, after a restart) are sent again, once it is loaded. done,
// when set, gets the answer of each call that ran, by its index.
func (r *Redis) evalEach(ctx context.Context, p Pipelines, script *redis.Script, calls []scriptCall, done func(i int, val any)) error {
	send := func(idx []int) ([]int, error) {
		cmds := make([]*redis.Cmd, len(idx))
		_, err := p.Pipelined(ctx, func(pl redis.Pipeliner) error {
			for j, i := range idx {
				cmds[j] = calls[i].of(script).EvalSha(ctx, pl, calls[i].keys, calls[i].args...)
			}
			return nil
		})
		var again []int
		for j, c := range cmds {
			switch {
			case c == nil: // withdrawn before it was sent: it never ran
			case c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT"):
				again = append(again, idx[j])
			case c.Err() == nil && done != nil:
				done(idx[j], c.Val())
			}
		}
		return again, err
	}
	if len(calls) == 0 {
		return nil
	}
	all := make([]int, len(calls))
	for i := range all {
		all[i] = i
	}
	again, err := send(all)
	if len(again) > 0 {
		for _, i := range again {
			if err = calls[i].of(script).Load(ctx, r.rdb).Err(); err != nil {
				return err
			}
		}
		_, err = send(again)
	}
	return err
}

// LeasesLost reports whether Redis lost the leases this replica gave it
// (its marker is gone), one command: checked every second, so that they
// are registered again at once rather than at the next renewal.
func (r *Redis) LeasesLost(ctx context.Context) (bool, error) {
	n, err := r.rdb.Exists(ctx, r.marker).Result()
	return n == 0, err
}

// renewArgs are a lease's KEYS and ARGV for renewScript.
func (r *Redis) renewArgs(res *Reservation, nowArg string, again bool) ([]string, []any) {
	k := r.keys(res.Subject, res.Day, res.Month)
	var keys []string
	flag := "0"
	if again {
		flag = "1"
	}
	args := []any{nowArg, LeaseTTL.Seconds(), flag}
	ls, n := res.levels()
	for i, l := range ls[:n] {
		keys = append(keys, k[perLevel*i+3], k[perLevel*i+4])
		args = append(args, res.Lease+"/"+held(l, res))
	}
	return keys, args
}

// Settlement is a reservation and what the request actually used:
// tokens, and their cost in picodollars.
type Settlement struct {
	Res    *Reservation
	Actual int64
	Cost   int64
}

// moot reports whether settling changes nothing: the estimate was exact,
// nothing was held and nothing was spent (a slice's request is counted
// in flight until settled).
func (st Settlement) moot() bool {
	return st.Actual == st.Res.Tokens && st.Res.Lease == "" && st.Cost == 0 && st.Res.slice == nil
}

// SettleBatch settles many reservations in one pipelined round trip (one
// per node on a Cluster), through the batcher other writers share.
func (r *Redis) SettleBatch(ctx context.Context, batch []Settlement) error {
	_, nowArg := r.clock()
	var todo []Settlement
	var calls []scriptCall
	for _, st := range batch {
		if st.Res != nil && !st.moot() {
			keys, args := r.settleArgs(st, nowArg)
			todo, calls = append(todo, st), append(calls, scriptCall{keys: keys, args: args})
		}
	}
	err := r.evalEach(ctx, r.pipe, settleScript, calls, func(i int, val any) { r.spent(todo[i], val) })
	if err != nil {
		return fmt.Errorf("settle %d reservations: %w", len(todo), err)
	}
	return nil
}

// Replay adds to the day and month counters Redis still holds what
// requests decided without it used (Settlement: tokens and cost), all in
// one pipelined round trip.
func (r *Redis) Replay(ctx context.Context, used []Settlement) error {
	calls := make([]scriptCall, 0, len(used))
	for _, u := range used {
		k := r.keys(u.Res.Subject, u.Res.Day, u.Res.Month)
		var keys []string
		_, n := u.Res.levels()
		for i := range n {
			keys = append(keys, k[perLevel*i+2], k[perLevel*i+4])
		}
		calls = append(calls, scriptCall{keys: keys, args: []any{u.Actual, u.Cost}})
	}
	if err := r.evalEach(ctx, r.rdb, replayScript, calls, nil); err != nil {
		return fmt.Errorf("replay %d subjects' use: %w", len(calls), err)
	}
	return nil
}

// settleArgs are a settlement's KEYS and ARGV for settleScript.
func (r *Redis) settleArgs(st Settlement, nowArg string) ([]string, []any) {
	k := r.keys(st.Res.Subject, st.Res.Day, st.Res.Month)
	var keys []string
	args := []any{nowArg, st.Actual - st.Res.Tokens, st.Res.Lease, st.Cost}
	ls, n := st.Res.levels()
	for i, l := range ls[:n] {
		keys = append(keys, k[perLevel*i+1], k[perLevel*i+2], k[perLevel*i+3], k[perLevel*i+4])
		args = append(args, l.lim.TPM, held(l, st.Res))
	}
	return keys, args
}

// held is what a reservation's lease holds at a level, as the admission
// script wrote it in the lease's member: its cost bound where the level
// has a budget.
func held(l level, res *Reservation) string {
	if l.lim.Budget > 0 {
		return strconv.FormatInt(res.Cost, 10)
	}
	return "0"
}

// spent reports what a settlement moved, from settleScript's answer.
func (r *Redis) spent(st Settlement, val any) {
	before, _ := val.([]any)
	ls, n := st.Res.levels()
	for i, l := range ls[:min(n, len(before))] {
		s, _ := before[i].(string)
		b, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			continue
		}
		r.money.report(spendOf(l, st.Res, b, b+st.Cost))
	}
}

// Load puts the scripts into Redis's script cache (on every master of a
// Cluster), so the first requests need no fallback. A Redis that restarts
// or flushes its cache later is served by go-redis's Script.Run, which
// falls back from EVALSHA to EVAL on NOSCRIPT.
func (r *Redis) Load(ctx context.Context) error {
	for _, s := range []*redis.Script{admitScript, seedScript, settleScript, renewScript, replayScript, sliceScript, syncScript} {
		if err := s.Load(ctx, r.rdb).Err(); err != nil {
			return fmt.Errorf("load quota scripts: %w", err)
		}
	}
	return nil
}
