package quota

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// epoch is redis_rate's: times in the scripts are seconds since
// 2017-01-01 UTC, so that a float64 keeps microseconds until 2048.
const epoch = 1483228800

// luaNow sets now from ARGV[1] (seconds since epoch; tests inject it) or,
// when that is empty, from Redis TIME, the one clock all replicas share.
const luaNow = `
local now
if ARGV[1] ~= "" then
  now = tonumber(ARGV[1])
else
  local t = redis.call("TIME")
  now = (t[1] - 1483228800) + (t[2] / 1000000)
end
`

// admitScript is redis_rate's GCRA (github.com/go-redis/redis_rate/v10,
// lua.go: the same tat arithmetic, key per limit, burst = rate) extended to
// decide RPM, TPM, TPD, concurrency and the monthly budget together, at
// every level of the subject (the key, then its project): every limit of
// every level is checked first and written only if all admit, so a
// denied request consumes nothing anywhere. One script, one round trip.
// redis_rate's API decides one limit per call, which cannot be
// all-or-nothing over several.
//
// KEYS, five per level: rpm tat, tpm tat, tpd counter, leases (a sorted
// set of lease id → expiry), spend of the month (a hash: s spent, h held
// by requests in flight, l:<lease> what each holds), all hash-tagged alike
// (one Cluster slot). ARGV: now (seconds since epoch; "" = Redis TIME),
// tokens, seconds until the day ends, dry ("1": decide for no request and
// write nothing, for the headers of answers that reserve nothing), lease
// id, lease ttl (seconds), cost bound (picodollars), seconds until the
// month ends; then per level rpm, tpm, tpd, concurrency, budget.
// It returns denied (a Limit; -1: a budget's counter is missing and must
// be seeded from the ledger first, nothing written), the refusing level
// (0-based), retry, hopeless, then nine figures per level.
var admitScript = redis.NewScript(luaNow + `
local cost, day_left = tonumber(ARGV[2]), tonumber(ARGV[3])
local dry = ARGV[4] == "1"
local lease, lease_ttl = ARGV[5], tonumber(ARGV[6])
local money, month_left = ARGV[7], tonumber(ARGV[8])
local reqs = 1
if dry then reqs, cost, money = 0, 0, "0" end

-- GCRA over a 60 s period with burst = rate: returns whether n fits, the
-- new tat, the remaining allowance, the wait until it would fit, and the
-- amount in use before this request.
local function gcra(key, limit, n)
  local interval = 60 / limit
  local tat = math.max(tonumber(redis.call("GET", key) or now), now)
  local used = (tat - now) / interval
  local new_tat = tat + interval * n
  local diff = now - (new_tat - 60)
  if diff < 0 then
    return false, tat, limit - used, -diff, used
  end
  return true, new_tat, diff / interval, 0, used
end

-- expire frees a level's leases past their expiry (requests that ended
-- without a settlement: a replica that died) and gives back the money
-- they held.
local function expire(leases, spend)
  local gone = redis.call("ZRANGEBYSCORE", leases, "-inf", now)
  if #gone == 0 then return end
  redis.call("ZREMRANGEBYSCORE", leases, "-inf", now)
  for _, l in ipairs(gone) do
    local held = redis.call("HGET", spend, "l:" .. l)
    if held then
      redis.call("HINCRBY", spend, "h", "-" .. held)
      redis.call("HDEL", spend, "l:" .. l)
    end
  end
end

-- decide checks one level (KEYS from k+1, ARGV from a) and returns its
-- state and its refusal (0 for none), retry and hopelessness.
local function decide(k, a)
  local s = {rpm = tonumber(ARGV[a]), tpm = tonumber(ARGV[a + 1]),
    tpd = tonumber(ARGV[a + 2]), conc = tonumber(ARGV[a + 3]), budget = tonumber(ARGV[a + 4]),
    r_ok = true, r_tat = now, r_rem = -1, r_wait = 0,
    t_ok = true, t_tat = now, t_rem = -1, t_wait = 0, t_used = 0, inflight = 0,
    spent = "0", held = "0"}
  if s.rpm > 0 then
    s.r_ok, s.r_tat, s.r_rem, s.r_wait = gcra(KEYS[k + 1], s.rpm, reqs)
  end
  if s.tpm > 0 then
    s.t_ok, s.t_tat, s.t_rem, s.t_wait, s.t_used = gcra(KEYS[k + 2], s.tpm, cost)
  end
  s.d_used = tonumber(redis.call("GET", KEYS[k + 3]) or 0)
  local denied, retry, hopeless = 0, 0, 0
  if not s.r_ok then
    denied, retry = 1, s.r_wait
  end
  if not s.t_ok and (denied == 0 or s.t_wait > retry or cost > s.tpm) then
    denied, retry = 2, s.t_wait
    if cost > s.tpm then hopeless = 1 end
  end
  if s.tpd > 0 and s.d_used + cost > s.tpd then
    denied, retry = 3, day_left
    if cost > s.tpd then hopeless = 1 end
  end
  if s.conc > 0 or s.budget > 0 then expire(KEYS[k + 4], KEYS[k + 5]) end
  if s.conc > 0 then
    s.inflight = redis.call("ZCARD", KEYS[k + 4])
    if denied == 0 and not dry and s.inflight >= s.conc then
      denied, retry = 4, 1
    end
  end
  if s.budget > 0 then
    local v = redis.call("HMGET", KEYS[k + 5], "s", "h")
    if not v[1] then return s, -1, 0, 0 end
    s.spent, s.held = v[1], v[2] or "0"
    if not dry and hopeless == 0 and tonumber(s.spent) + tonumber(s.held) >= s.budget then
      denied, retry, hopeless = 5, month_left, 0
    end
  end
  return s, denied, retry, hopeless
end

-- take writes one level's reservation.
local function take(k, s)
  -- A tat within float precision of now (a huge limit) is not stored:
  -- SET EX 0 is an error.
  if s.rpm > 0 and s.r_tat > now then
    redis.call("SET", KEYS[k + 1], s.r_tat, "EX", math.max(1, math.ceil(s.r_tat - now)))
  end
  if s.tpm > 0 and s.t_tat > now then
    redis.call("SET", KEYS[k + 2], s.t_tat, "EX", math.max(1, math.ceil(s.t_tat - now)))
  end
  if cost > 0 then
    redis.call("INCRBY", KEYS[k + 3], cost)
    redis.call("EXPIRE", KEYS[k + 3], math.ceil(day_left) + 3600)
  end
  if s.conc > 0 or s.budget > 0 then
    redis.call("ZADD", KEYS[k + 4], now + lease_ttl, lease)
    redis.call("EXPIRE", KEYS[k + 4], math.ceil(lease_ttl) + 60)
  end
  if s.budget > 0 and money ~= "0" then
    redis.call("HINCRBY", KEYS[k + 5], "h", money)
    redis.call("HSET", KEYS[k + 5], "l:" .. lease, money)
  end
end

local levels = #KEYS / 5
local states = {}
local denied, level, retry, hopeless = 0, 0, 0, 0
for i = 0, levels - 1 do
  local s, d, r, h = decide(5 * i, 9 + 5 * i)
  if d == -1 then return {-1, i, "0", 0} end
  states[i + 1] = s
  -- The refusal a wait cannot cure, else the longest wait, speaks for
  -- the request.
  if d ~= 0 and (denied == 0 or h > hopeless or (h == hopeless and r > retry)) then
    denied, level, retry, hopeless = d, i, r, h
  end
end
if denied == 0 and not dry then
  for i = 0, levels - 1 do take(5 * i, states[i + 1]) end
end
local out = {denied, level, tostring(retry), hopeless}
for i = 1, levels do
  local s = states[i]
  for _, v in ipairs({tostring(s.r_rem), tostring(math.max(s.r_tat - now, 0)), tostring(s.t_used),
      tostring(s.t_rem), tostring(math.max(s.t_tat - now, 0)), s.d_used, s.inflight, s.spent, s.held}) do
    out[#out + 1] = v
  end
end
return out
`)

// seedScript starts the spend counters Redis does not hold from the
// ledger's figures, unless a replica got there first. KEYS: spend
// hashes. ARGV: their spent figures (picodollars), then the seconds until
// the month ends.
var seedScript = redis.NewScript(`
local ttl = math.ceil(tonumber(ARGV[#ARGV])) + 86400
for i, k in ipairs(KEYS) do
  if redis.call("HSETNX", k, "s", ARGV[i]) == 1 then redis.call("EXPIRE", k, ttl) end
end
return 1
`)

// settleScript replaces an estimate by the real count at every level:
// delta tokens (negative refunds) move the TPM tat and the TPD counter of
// the day the reservation was made. A refund never lifts the TPM
// allowance above full; a charge may push it past the limit, a debt later
// requests wait out. It releases the request's lease, gives back the
// money it held and adds its cost to the month's spending (where a
// counter is kept: one that is missing is seeded from the ledger, which
// has the cost).
//
// KEYS, four per level: tpm tat, tpd counter, leases, spend. ARGV: now
// ("" = Redis TIME), delta, lease id ("" for none), cost, then each
// level's tpm. It returns each level's spending before the cost was
// added ("" where no counter is kept).
var settleScript = redis.NewScript(luaNow + `
local delta = tonumber(ARGV[2])
local lease, cost = ARGV[3], ARGV[4]
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, tpm = 4 * i, tonumber(ARGV[5 + i])
  if lease ~= "" then
    redis.call("ZREM", KEYS[k + 3], lease)
    local held = redis.call("HGET", KEYS[k + 4], "l:" .. lease)
    if held then
      redis.call("HINCRBY", KEYS[k + 4], "h", "-" .. held)
      redis.call("HDEL", KEYS[k + 4], "l:" .. lease)
    end
  end
  local before = redis.call("HGET", KEYS[k + 4], "s")
  if before and cost ~= "0" then redis.call("HINCRBY", KEYS[k + 4], "s", cost) end
  out[i + 1] = before or ""
  if tpm > 0 and delta ~= 0 then
    local tat = math.max(tonumber(redis.call("GET", KEYS[k + 1]) or now), now)
    local new_tat = math.max(tat + (60 / tpm) * delta, now)
    if new_tat > now then
      redis.call("SET", KEYS[k + 1], new_tat, "EX", math.max(1, math.ceil(new_tat - now)))
    else
      redis.call("DEL", KEYS[k + 1])
    end
  end
  if delta ~= 0 and (redis.call("EXISTS", KEYS[k + 2]) == 1 or delta > 0) then
    local left = redis.call("INCRBY", KEYS[k + 2], delta)
    if left < 0 then redis.call("SET", KEYS[k + 2], 0, "KEEPTTL") end
    if redis.call("TTL", KEYS[k + 2]) < 0 then redis.call("EXPIRE", KEYS[k + 2], 90000) end
  end
end
return out
`)

// Redis admits and settles in a Redis shared by every replica.
type Redis struct {
	rdb    redis.UniversalClient
	pipe   Pipelines // rdb, or a batcher shared with other writers
	prefix string
	money  Money
	// now, when set, replaces Redis TIME (tests); the TPD day is always
	// taken from now or the local clock.
	now func() time.Time
}

// Money is what budgets need beyond the counters: the ledger that a
// missing spend counter starts from, and who hears of spending (alerts).
// Without a Ledger a missing counter starts at 0.
type Money struct {
	Ledger  Ledger
	OnSpend func(Spend)
}

func (m Money) spent(ctx context.Context, l level, sub Subject, month string) (int64, error) {
	if m.Ledger == nil {
		return 0, nil
	}
	if l.project {
		return m.Ledger.Spent(ctx, "", sub.Project, month)
	}
	return m.Ledger.Spent(ctx, sub.Key, "", month)
}

func (m Money) report(sp Spend, ok bool) {
	if ok && m.OnSpend != nil {
		m.OnSpend(sp)
	}
}

// NewRedis returns a limiter over rdb; every key starts with prefix.
func NewRedis(rdb redis.UniversalClient, prefix string) *Redis {
	return &Redis{rdb: rdb, pipe: rdb, prefix: prefix}
}

// Pipelines runs pipelines: the Redis client itself, or a batcher that
// sends other writers' commands in the same round trip.
type Pipelines interface {
	Pipelined(ctx context.Context, fn func(redis.Pipeliner) error) ([]redis.Cmder, error)
}

// SetPipelines sends the batched writes through p.
func (r *Redis) SetPipelines(p Pipelines) { r.pipe = p }

// SetMoney gives budgets their ledger and listener.
func (r *Redis) SetMoney(m Money) { r.money = m }

// perLevel is how many keys each level has in admitScript.
const perLevel = 5

// keys returns the keys of each of a subject's levels (rpm, tpm, tpd of
// the day, leases, spend of the month), hash-tagged alike so that a Redis
// Cluster keeps them in one slot: on the key, or on its project when it
// has one (a key that changes project starts with fresh counters there).
func (r *Redis) keys(s Subject, day, month string) []string {
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
	args := []any{nowArg, tokens, left.Seconds(), dryArg, lease, LeaseTTL.Seconds(), cost, moLeft.Seconds()}
	for _, l := range levels {
		args = append(args, l.lim.RPM, l.lim.TPM, l.lim.TPD, l.lim.Concurrency, l.lim.Budget)
	}
	keys := r.keys(sub, d, mo)
	res, err := admitScript.Run(ctx, r.rdb, keys, args...).Slice()
	if err == nil && len(res) > 0 && res[0] == int64(-1) {
		if err = r.seed(ctx, sub, keys, mo, moLeft); err == nil {
			res, err = admitScript.Run(ctx, r.rdb, keys, args...).Slice()
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

// decision reads admitScript's answer.
func decision(res []any, levels int) Decision {
	f := func(i int) float64 {
		s, _ := res[i].(string)
		v, _ := strconv.ParseFloat(s, 64)
		return v
	}
	n := func(i int) int64 {
		if s, ok := res[i].(string); ok {
			v, _ := strconv.ParseInt(s, 10, 64)
			return v
		}
		v, _ := res[i].(int64)
		return v
	}
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	figures := func(i int) Decision {
		return Decision{
			RequestsRemaining: whole(f(i)),
			RequestsReset:     sec(f(i + 1)),
			TokensUsed:        int64(f(i+2) + 0.5),
			TokensRemaining:   whole(f(i + 3)),
			TokensReset:       sec(f(i + 4)),
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
	dec.RetryAfter, dec.Hopeless = sec(f(2)), n(3) == 1
	dec.Allowed = dec.Denied == None
	return dec
}

// seed starts the subject's missing spend counters from the ledger.
func (r *Redis) seed(ctx context.Context, sub Subject, keys []string, mo string, left time.Duration) error {
	var hashes []string
	var args []any
	ls, n := sub.levels()
	for i, l := range ls[:n] {
		if l.lim.Budget <= 0 {
			continue
		}
		v, err := r.money.spent(ctx, l, sub, mo)
		if err != nil {
			return fmt.Errorf("spend of %s in %s from the ledger: %w", l.id, mo, err)
		}
		hashes = append(hashes, keys[perLevel*i+4])
		args = append(args, v)
	}
	args = append(args, left.Seconds())
	return seedScript.Run(ctx, r.rdb, hashes, args...).Err()
}

// renewScript extends a lease that is still held, at every level. KEYS:
// leases. ARGV: now ("" = Redis TIME), lease id, ttl.
var renewScript = redis.NewScript(luaNow + `
for _, k in ipairs(KEYS) do
  redis.call("ZADD", k, "XX", now + tonumber(ARGV[3]), ARGV[2])
  redis.call("EXPIRE", k, math.ceil(tonumber(ARGV[3])) + 60)
end
return 1
`)

// Renew extends res's concurrency lease by LeaseTTL.
func (r *Redis) Renew(ctx context.Context, res *Reservation) error {
	if res == nil || res.Lease == "" {
		return nil
	}
	_, nowArg := r.clock()
	k := r.keys(res.Subject, res.Day, res.Month)
	var leases []string
	for i := 3; i < len(k); i += perLevel {
		leases = append(leases, k[i])
	}
	if err := renewScript.Run(ctx, r.rdb, leases, nowArg, res.Lease, LeaseTTL.Seconds()).Err(); err != nil {
		return fmt.Errorf("renew lease of %s: %w", res.Key, err)
	}
	return nil
}

// Settlement is a reservation and what the request actually used:
// tokens, and their cost in picodollars.
type Settlement struct {
	Res    *Reservation
	Actual int64
	Cost   int64
}

// moot reports whether settling changes nothing: the estimate was exact,
// nothing was held and nothing was spent.
func (st Settlement) moot() bool {
	return st.Actual == st.Res.Tokens && st.Res.Lease == "" && st.Cost == 0
}

// SettleBatch settles many reservations in one pipelined round trip (one
// per node on a Cluster). A settlement is not idempotent, so only those
// Redis did not run (NOSCRIPT after a restart) are sent again.
func (r *Redis) SettleBatch(ctx context.Context, batch []Settlement) error {
	_, nowArg := r.clock()
	send := func(todo []Settlement) ([]Settlement, error) {
		cmds := make([]*redis.Cmd, len(todo))
		_, err := r.pipe.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, st := range todo {
				keys, args := r.settleArgs(st, nowArg)
				cmds[i] = settleScript.EvalSha(ctx, p, keys, args...)
			}
			return nil
		})
		var again []Settlement
		for i, c := range cmds {
			if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				again = append(again, todo[i])
			} else if c.Err() == nil {
				r.spent(todo[i], c.Val())
			}
		}
		return again, err
	}
	var todo []Settlement
	for _, st := range batch {
		if st.Res != nil && !st.moot() {
			todo = append(todo, st)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	again, err := send(todo)
	if len(again) > 0 {
		if err = settleScript.Load(ctx, r.rdb).Err(); err == nil {
			_, err = send(again)
		}
	}
	if err != nil {
		return fmt.Errorf("settle %d reservations: %w", len(todo), err)
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
		args = append(args, l.lim.TPM)
	}
	return keys, args
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
	for _, s := range []*redis.Script{admitScript, seedScript, settleScript, renewScript} {
		if err := s.Load(ctx, r.rdb).Err(); err != nil {
			return fmt.Errorf("load quota scripts: %w", err)
		}
	}
	return nil
}
