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
// decide RPM, TPM and TPD together: every limit is checked first and
// written only if all admit, so a denied request consumes nothing. One
// script, one round trip. redis_rate's API decides one limit per call,
// which cannot be all-or-nothing over three.
//
// KEYS: rpm tat, tpm tat, tpd counter, leases (a sorted set of lease id
// → expiry), all hash-tagged on the API key.
// ARGV: now (seconds since epoch; "" = Redis TIME), rpm, tpm, tpd, tokens,
// seconds until the day ends, dry ("1": decide for no request and write
// nothing, for the headers of answers that reserve nothing), concurrency,
// lease id, lease ttl (seconds).
var admitScript = redis.NewScript(luaNow + `
local rpm, tpm, tpd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local cost, day_left = tonumber(ARGV[5]), tonumber(ARGV[6])
local dry = ARGV[7] == "1"
local conc, lease_ttl = tonumber(ARGV[8]), tonumber(ARGV[10])
local reqs = 1
if dry then reqs, cost = 0, 0 end

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

local denied, retry, hopeless = 0, 0, 0
local r_ok, r_tat, r_rem, r_wait = true, now, -1, 0
local t_ok, t_tat, t_rem, t_wait, t_used = true, now, -1, 0, 0
if rpm > 0 then
  r_ok, r_tat, r_rem, r_wait = gcra(KEYS[1], rpm, reqs)
end
if tpm > 0 then
  t_ok, t_tat, t_rem, t_wait, t_used = gcra(KEYS[2], tpm, cost)
end
local d_used = tonumber(redis.call("GET", KEYS[3]) or 0)

if not r_ok then
  denied, retry = 1, r_wait
end
if not t_ok and (denied == 0 or t_wait > retry or cost > tpm) then
  denied, retry = 2, t_wait
  if cost > tpm then hopeless = 1 end
end
if tpd > 0 and d_used + cost > tpd then
  denied, retry = 3, day_left
  if cost > tpd then hopeless = 1 end
end
-- Leases past their expiry belong to requests that ended without a
-- settlement (a replica that died): they are freed here.
local inflight = 0
if conc > 0 then
  redis.call("ZREMRANGEBYSCORE", KEYS[4], "-inf", now)
  inflight = redis.call("ZCARD", KEYS[4])
  if denied == 0 and not dry and inflight >= conc then
    denied, retry = 4, 1
  end
end

if denied == 0 and not dry then
  -- A tat within float precision of now (a huge limit) is not stored:
  -- SET EX 0 is an error.
  if rpm > 0 and r_tat > now then
    redis.call("SET", KEYS[1], r_tat, "EX", math.max(1, math.ceil(r_tat - now)))
  end
  if tpm > 0 and t_tat > now then
    redis.call("SET", KEYS[2], t_tat, "EX", math.max(1, math.ceil(t_tat - now)))
  end
  if cost > 0 then
    redis.call("INCRBY", KEYS[3], cost)
    redis.call("EXPIRE", KEYS[3], math.ceil(day_left) + 3600)
  end
  if conc > 0 then
    redis.call("ZADD", KEYS[4], now + lease_ttl, ARGV[9])
    redis.call("EXPIRE", KEYS[4], math.ceil(lease_ttl) + 60)
  end
end
local r_reset = math.max(r_tat - now, 0)
local t_reset = math.max(t_tat - now, 0)
return {denied, tostring(retry), hopeless, tostring(r_rem), tostring(r_reset),
  tostring(t_used), tostring(t_rem), tostring(t_reset), d_used, inflight}
`)

// settleScript replaces an estimate by the real count: delta tokens
// (negative refunds) move the TPM tat and the TPD counter of the day the
// reservation was made. A refund never lifts the TPM allowance above full;
// a charge may push it past the limit, a debt later requests wait out.
//
// It also releases the request's concurrency lease.
//
// KEYS: tpm tat, tpd counter, leases. ARGV: now ("" = Redis TIME), tpm,
// delta, lease id ("" for none).
var settleScript = redis.NewScript(luaNow + `
local tpm, delta = tonumber(ARGV[2]), tonumber(ARGV[3])
if ARGV[4] ~= "" then redis.call("ZREM", KEYS[3], ARGV[4]) end
if tpm > 0 then
  local tat = math.max(tonumber(redis.call("GET", KEYS[1]) or now), now)
  local new_tat = math.max(tat + (60 / tpm) * delta, now)
  if new_tat > now then
    redis.call("SET", KEYS[1], new_tat, "EX", math.max(1, math.ceil(new_tat - now)))
  else
    redis.call("DEL", KEYS[1])
  end
end
if redis.call("EXISTS", KEYS[2]) == 1 or delta > 0 then
  local left = redis.call("INCRBY", KEYS[2], delta)
  if left < 0 then redis.call("SET", KEYS[2], 0, "KEEPTTL") end
  if redis.call("TTL", KEYS[2]) < 0 then redis.call("EXPIRE", KEYS[2], 90000) end
end
return 1
`)

// Redis admits and settles in a Redis shared by every replica.
type Redis struct {
	rdb    redis.UniversalClient
	pipe   Pipelines // rdb, or a batcher shared with other writers
	prefix string
	// now, when set, replaces Redis TIME (tests); the TPD day is always
	// taken from now or the local clock.
	now func() time.Time
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

// keys returns the four keys of an API key, hash-tagged so that a Redis
// Cluster keeps them in one slot: rpm, tpm, tpd of the day, leases.
func (r *Redis) keys(key, day string) []string {
	base := r.prefix + "{" + key + "}:"
	return []string{base + "rpm", base + "tpm", base + "tpd:" + day, base + "leases"}
}

func (r *Redis) clock() (time.Time, string) {
	if r.now != nil {
		t := r.now()
		return t, strconv.FormatFloat(float64(t.UnixMicro())/1e6-epoch, 'f', 6, 64)
	}
	return time.Now(), ""
}

// Admit reserves tokens for key against lim, all or nothing.
func (r *Redis) Admit(ctx context.Context, key string, lim Limits, tokens int64) (Decision, error) {
	return r.admit(ctx, key, lim, tokens, false)
}

// Peek reports key's allowances without reserving anything.
func (r *Redis) Peek(ctx context.Context, key string, lim Limits) (Decision, error) {
	return r.admit(ctx, key, lim, 0, true)
}

// Ping reports whether Redis answers.
func (r *Redis) Ping(ctx context.Context) error { return r.rdb.Ping(ctx).Err() }

func (r *Redis) admit(ctx context.Context, key string, lim Limits, tokens int64, dry bool) (Decision, error) {
	now, nowArg := r.clock()
	d, left := day(now)
	dryArg := "0"
	if dry {
		dryArg = "1"
	}
	lease := ""
	if lim.Concurrency > 0 && !dry {
		lease = newLease()
	}
	res, err := admitScript.Run(ctx, r.rdb, r.keys(key, d),
		nowArg, lim.RPM, lim.TPM, lim.TPD, tokens, left.Seconds(), dryArg, lim.Concurrency, lease, LeaseTTL.Seconds()).Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("admit %s: %w", key, err)
	}
	if len(res) != 10 {
		return Decision{}, fmt.Errorf("admit %s: script returned %d values", key, len(res))
	}
	f := func(i int) float64 {
		s, _ := res[i].(string)
		v, _ := strconv.ParseFloat(s, 64)
		return v
	}
	n := func(i int) int64 { v, _ := res[i].(int64); return v }
	sec := func(v float64) time.Duration { return time.Duration(v * float64(time.Second)) }
	dec := Decision{
		Denied:            Limit(n(0)),
		RetryAfter:        sec(f(1)),
		Hopeless:          n(2) == 1,
		RequestsRemaining: int64(f(3)),
		RequestsReset:     sec(f(4)),
		TokensUsed:        int64(f(5) + 0.5),
		TokensRemaining:   int64(f(6)),
		TokensReset:       sec(f(7)),
		DailyUsed:         n(8),
		InFlight:          n(9),
	}
	dec.Allowed = dec.Denied == None
	if dec.Allowed && !dry {
		dec.Reservation = &Reservation{Key: key, Day: d, Tokens: tokens, Limits: lim, Lease: lease}
	}
	return dec, nil
}

// renewScript extends a lease that is still held. KEYS: leases. ARGV: now
// ("" = Redis TIME), lease id, ttl.
var renewScript = redis.NewScript(luaNow + `
redis.call("ZADD", KEYS[1], "XX", now + tonumber(ARGV[3]), ARGV[2])
redis.call("EXPIRE", KEYS[1], math.ceil(tonumber(ARGV[3])) + 60)
return 1
`)

// Renew extends res's concurrency lease by LeaseTTL.
func (r *Redis) Renew(ctx context.Context, res *Reservation) error {
	if res == nil || res.Lease == "" {
		return nil
	}
	_, nowArg := r.clock()
	k := r.keys(res.Key, res.Day)
	if err := renewScript.Run(ctx, r.rdb, k[3:], nowArg, res.Lease, LeaseTTL.Seconds()).Err(); err != nil {
		return fmt.Errorf("renew lease of %s: %w", res.Key, err)
	}
	return nil
}

// Settlement is a reservation and what the request actually used.
type Settlement struct {
	Res    *Reservation
	Actual int64
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
				k := r.keys(st.Res.Key, st.Res.Day)
				cmds[i] = settleScript.EvalSha(ctx, p, []string{k[1], k[2], k[3]}, nowArg, st.Res.Limits.TPM, st.Actual-st.Res.Tokens, st.Res.Lease)
			}
			return nil
		})
		var again []Settlement
		for i, c := range cmds {
			if c.Err() != nil && redis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				again = append(again, todo[i])
			}
		}
		return again, err
	}
	var todo []Settlement
	for _, st := range batch {
		if st.Res != nil && (st.Actual != st.Res.Tokens || st.Res.Lease != "") {
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

// Load puts the scripts into Redis's script cache (on every master of a
// Cluster), so the first requests need no fallback. A Redis that restarts
// or flushes its cache later is served by go-redis's Script.Run, which
// falls back from EVALSHA to EVAL on NOSCRIPT.
func (r *Redis) Load(ctx context.Context) error {
	for _, s := range []*redis.Script{admitScript, settleScript} {
		if err := s.Load(ctx, r.rdb).Err(); err != nil {
			return fmt.Errorf("load quota scripts: %w", err)
		}
	}
	return nil
}
