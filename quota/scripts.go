package quota

import "github.com/redis/go-redis/v9"

// The Lua scripts of the Redis store: each decision or settlement is one
// script call, atomic in Redis.

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
// set of "<lease id>/<picodollars it holds>" → expiry, in whole seconds:
// a small sorted set is a listpack, where an insert reads every member's
// score, and an integer score is read without parsing text), spend of the
// month (a hash: s spent, h held by requests in flight), all hash-tagged
// alike (one Cluster slot). ARGV: now (seconds since epoch; "" = Redis
// TIME), tokens, seconds until the day ends, dry ("1": decide for no
// request and write nothing, for the headers of answers that reserve
// nothing), lease id, lease ttl (seconds), cost bound (picodollars),
// seconds until the month ends, the TPD counter's ttl, the leases' ttl;
// then per level rpm, tpm, tpd, concurrency, budget, strict ("1": the
// request's cost bound must fit in what the budget leaves).
//
// Each number turned into text or back costs Redis thousands of
// instructions, more than a command: figures Go already has as text are
// passed to commands as they came, a level's unset limits are not parsed,
// and the answer is integers (durations in microseconds) but for the
// spend figures, passed through as Redis holds them.
//
// It returns denied (a Limit; -1: a budget's or, with a TPD, the day's
// counter is missing and must be seeded from the ledger first, nothing
// written), the refusing level
// (0-based), retry (µs), hopeless, then nine figures per level.
var admitScript = redis.NewScript(luaNow + "local per = 5\n" + luaDecide + `
-- take writes one level's reservation. An admitted tat is at most 60 s
-- ahead (burst = rate), so its key lives 61 s; a tat within float
-- precision of now (a huge limit) is not stored.
local expiry
local function take(k, s)
  if s.rpm > 0 and s.r_tat > now then
    redis.call("SET", KEYS[k + 1], s.r_tat, "EX", "61")
  end
  if s.tpm > 0 and s.t_tat > now then
    redis.call("SET", KEYS[k + 2], s.t_tat, "EX", "61")
  end
  if cost > 0 and redis.call("INCRBY", KEYS[k + 3], tokens) == cost then
    redis.call("EXPIRE", KEYS[k + 3], ARGV[9]) -- a new day's counter
  end
  local held = "0"
  if s.budget > 0 then held = money end
  if s.conc > 0 or s.budget > 0 then
    expiry = expiry or string.format("%d", math.ceil(now + lease_ttl))
    redis.call("ZADD", KEYS[k + 4], expiry, lease .. "/" .. held)
    redis.call("EXPIRE", KEYS[k + 4], ARGV[10])
  end
  if held ~= "0" then redis.call("HINCRBY", KEYS[k + 5], "h", held) end
end

local states, denied, level, retry, hopeless = decide_all()
if denied == -1 then return {-1, level, 0, 0} end
if denied == 0 and not dry then
  for i = 0, levels - 1 do take(per * i, states[i + 1]) end
end
return answer(states, denied, level, retry, hopeless)
`)

// luaDecide is what admitScript and sliceScript share: reading ARGV's
// request and levels, GCRA, leases, and deciding every level
// (decide_all) and answering with each level's figures (answer). ARGV
// as admitScript's; KEYS as admitScript's, per (a Lua local the script
// sets first) keys per level, the first five admitScript's.
const luaDecide = `
local cost, tokens = tonumber(ARGV[2]), ARGV[2]
local dry = ARGV[4] == "1"
local lease, lease_ttl = ARGV[5], tonumber(ARGV[6])
local money = ARGV[7]
local reqs = 1
if dry then reqs, cost, money = 0, 0, "0" end

local function num(a)
  local v = ARGV[a]
  if v == "0" then return 0 end
  return tonumber(v)
end

-- GCRA over a 60 s period with burst = rate: from the stored tat v,
-- returns whether n fits, the new tat, the remaining allowance, the wait
-- until it would fit, and the amount in use before this request.
local function gcra(v, limit, n)
  local interval = 60 / limit
  local tat = now
  if v then tat = math.max(tonumber(v), now) end
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
-- they held, which each lease's member carries after its "/".
local cutoff
local function expire(leases, spend)
  cutoff = cutoff or string.format("%d", math.floor(now))
  local gone = redis.call("ZRANGEBYSCORE", leases, "-inf", cutoff)
  if #gone == 0 then return end
  redis.call("ZREMRANGEBYSCORE", leases, "-inf", cutoff)
  for _, l in ipairs(gone) do
    local held = string.match(l, "/(%d+)$")
    if held and held ~= "0" then redis.call("HINCRBY", spend, "h", "-" .. held) end
  end
end

-- leased reads a level's leases in flight and its spend into s, and
-- reports whether they are at its concurrency cap or budget (-1: the
-- spend counter is missing). A dry run frees expired leases first.
local function leased(k, s)
  if s.conc <= 0 and s.budget <= 0 then return false end
  if dry then expire(KEYS[k + 4], KEYS[k + 5]) end
  local full = false
  if s.conc > 0 then
    s.inflight = redis.call("ZCARD", KEYS[k + 4])
    full = s.inflight >= s.conc
  end
  if s.budget > 0 then
    local v = redis.call("HMGET", KEYS[k + 5], "s", "h")
    if not v[1] then return -1 end
    s.spent, s.held = v[1], v[2] or "0"
    full = full or tonumber(s.spent) + tonumber(s.held) >= s.budget
  end
  return full
end

-- decide checks one level (KEYS from k+1, ARGV from a) and returns its
-- state and its refusal (0 for none), retry and hopelessness.
local function decide(k, a)
  local s = {rpm = num(a), tpm = num(a + 1), tpd = num(a + 2), conc = num(a + 3), budget = num(a + 4),
    strict = ARGV[a + 5] == "1",
    r_ok = true, r_tat = now, r_rem = -1, r_wait = 0,
    t_ok = true, t_tat = now, t_rem = -1, t_wait = 0, t_used = 0, inflight = 0,
    d_used = 0, spent = "0", held = "0"}
  local v = redis.call("MGET", KEYS[k + 1], KEYS[k + 2], KEYS[k + 3])
  -- A day's counter that is missing where a TPD decides is started from
  -- the ledger first: Redis may have lost it.
  if s.tpd > 0 and not v[3] then return s, -1, 0, 0 end
  if s.rpm > 0 then
    s.r_ok, s.r_tat, s.r_rem, s.r_wait = gcra(v[1], s.rpm, reqs)
  end
  if s.tpm > 0 then
    s.t_ok, s.t_tat, s.t_rem, s.t_wait, s.t_used = gcra(v[2], s.tpm, cost)
  end
  if v[3] then s.d_used = tonumber(v[3]) end
  local denied, retry, hopeless = 0, 0, 0
  if not s.r_ok then
    denied, retry = 1, s.r_wait
  end
  if not s.t_ok and (denied == 0 or s.t_wait > retry or cost > s.tpm) then
    denied, retry = 2, s.t_wait
    if cost > s.tpm then hopeless = 1 end
  end
  if s.tpd > 0 and s.d_used + cost > s.tpd then
    denied, retry = 3, tonumber(ARGV[3])
    if cost > s.tpd then hopeless = 1 end
  end
  -- Leases past their expiry are freed where they would refuse the
  -- request (and for a dry run's figures), not on every admission.
  local full = leased(k, s)
  if full and not dry then
    expire(KEYS[k + 4], KEYS[k + 5])
    full = leased(k, s)
  end
  if full == -1 then return s, -1, 0, 0 end
  if not dry and s.conc > 0 and denied == 0 and s.inflight >= s.conc then
    denied, retry = 4, 1
  end
  if not dry and hopeless == 0 and s.budget > 0 then
    local used = tonumber(s.spent) + tonumber(s.held)
    if used >= s.budget or (s.strict and used + tonumber(money) > s.budget) then
      denied, retry, hopeless = 5, tonumber(ARGV[8]), 0
    end
  end
  return s, denied, retry, hopeless
end

-- whole is an allowance as a whole number: an unlimited -1 or a debt
-- truncated towards zero, else rounded down.
local function whole(v)
  if v < 0 then return math.ceil(v) end
  return math.floor(v + 1e-6)
end

-- us is a duration in whole microseconds, rounded up: a wait is never
-- told shorter than it is.
local function us(v) return math.ceil(v * 1000000) end

local levels = #KEYS / per

-- decide_all decides every level; the refusal a wait cannot cure, else
-- the longest wait, speaks for the request (denied -1: a counter must be
-- seeded first, at the level returned).
local function decide_all()
  local states = {}
  local denied, level, retry, hopeless = 0, 0, 0, 0
  for i = 0, levels - 1 do
    local s, d, r, h = decide(per * i, 11 + 6 * i)
    if d == -1 then return states, -1, i, 0, 0 end
    states[i + 1] = s
    if d ~= 0 and (denied == 0 or h > hopeless or (h == hopeless and r > retry)) then
      denied, level, retry, hopeless = d, i, r, h
    end
  end
  return states, denied, level, retry, hopeless
end

-- answer is the decision, then nine figures per level.
local function answer(states, denied, level, retry, hopeless)
  local out = {denied, level, us(retry), hopeless}
  local n = 4
  for i = 1, levels do
    local s = states[i]
    out[n + 1], out[n + 2], out[n + 3] = whole(s.r_rem), us(math.max(s.r_tat - now, 0)), math.floor(s.t_used + 0.5)
    out[n + 4], out[n + 5], out[n + 6] = whole(s.t_rem), us(math.max(s.t_tat - now, 0)), s.d_used
    out[n + 7], out[n + 8], out[n + 9] = s.inflight, s.spent, s.held
    n = n + 9
  end
  return out
end
`

// seedScript starts the counters Redis does not hold from the ledger's
// figures, unless a replica got there first: spend hashes and days' token
// counters. KEYS: the spend hashes, then the day counters. ARGV: how many
// spend hashes, their spent figures (picodollars) and the day counters'
// tokens, then the spend hashes' and the day counters' ttl (seconds).
var seedScript = redis.NewScript(`
local spends = tonumber(ARGV[1])
local month_ttl, day_ttl = ARGV[#ARGV - 1], ARGV[#ARGV]
for i, k in ipairs(KEYS) do
  if i <= spends then
    if redis.call("HSETNX", k, "s", ARGV[1 + i]) == 1 then redis.call("EXPIRE", k, month_ttl) end
  else
    redis.call("SET", k, ARGV[1 + i], "NX", "EX", day_ttl)
  end
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
// has the cost; so is a day's token counter).
//
// KEYS, four per level: tpm tat, tpd counter, leases, spend. ARGV: now
// ("" = Redis TIME), delta, lease id ("" for none), cost, then per level
// its tpm and what its lease holds (picodollars). It returns each level's
// spending before the cost was added ("" where no counter is kept).
var settleScript = redis.NewScript(luaNow + luaMoveTokens + `
local delta = tonumber(ARGV[2])
local lease, cost = ARGV[3], ARGV[4]
local out = {}
for i = 0, #KEYS / 4 - 1 do
  local k, tpm, held = 4 * i, tonumber(ARGV[5 + 2 * i]), ARGV[6 + 2 * i]
  -- A lease already expired gave its hold back then.
  if lease ~= "" and redis.call("ZREM", KEYS[k + 3], lease .. "/" .. held) == 1 and held ~= "0" then
    redis.call("HINCRBY", KEYS[k + 4], "h", "-" .. held)
  end
  local before = redis.call("HGET", KEYS[k + 4], "s")
  if before and cost ~= "0" then redis.call("HINCRBY", KEYS[k + 4], "s", cost) end
  out[i + 1] = before or ""
  move_tokens(KEYS[k + 1], KEYS[k + 2], tpm, delta)
end
return out
`)

// luaMoveTokens is move_tokens(tpm key, day key, tpm, delta): tokens
// charged (delta > 0, a debt) or given back (< 0) on a level's TPM tat
// and its day's counter. A refund never lifts TPM above full nor the day
// below 0; a day's counter that was not there (Redis lost it) stays
// away: the ledger, which has the request, starts it at the next
// admission. Scripts that use it set now first.
const luaMoveTokens = `
local function move_tokens(tpm_key, day_key, tpm, delta)
  if delta == 0 then return end
  if tpm > 0 then
    local tat = math.max(tonumber(redis.call("GET", tpm_key) or now), now)
    local new_tat = math.max(tat + (60 / tpm) * delta, now)
    if new_tat > now then
      redis.call("SET", tpm_key, new_tat, "EX", math.max(1, math.ceil(new_tat - now)))
    else
      redis.call("DEL", tpm_key)
    end
  end
  local left = redis.call("INCRBY", day_key, delta)
  if left == delta then
    redis.call("DEL", day_key)
  elseif left < 0 then
    redis.call("SET", day_key, 0, "KEEPTTL")
  end
end
`

// renewScript extends a lease that is still held, at every level; one
// that is gone stays gone, unless Redis lost its leases (flushed,
// replaced): then the replica holding it registers it again, with the
// money it holds. KEYS, two per level: leases, spend. ARGV: now ("" =
// Redis TIME), ttl, again ("1": register leases that are missing), then
// each level's lease member.
var renewScript = redis.NewScript(luaNow + `
local ttl, again = tonumber(ARGV[2]), ARGV[3] == "1"
local expiry = math.ceil(now + ttl)
for i = 1, #KEYS / 2 do
  local leases, spend, member = KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 + i]
  if again then
    if redis.call("ZADD", leases, expiry, member) == 1 then
      local held = string.match(member, "/(%d+)$")
      if held and held ~= "0" then
        redis.call("HINCRBY", spend, "h", held)
        if redis.call("TTL", spend) < 0 then redis.call("EXPIRE", spend, 3456000) end
      end
    end
  else
    redis.call("ZADD", leases, "XX", expiry, member)
  end
  redis.call("EXPIRE", leases, math.ceil(ttl) + 60)
end
return 1
`)

// replayScript adds what requests decided without Redis used to the
// counters Redis still holds (a counter it lost starts from the ledger,
// which has them). KEYS, two per level: the day's tokens, the month's
// spend. ARGV: tokens, cost (picodollars).
var replayScript = redis.NewScript(`
for i = 1, #KEYS / 2 do
  local day, spend = KEYS[2 * i - 1], KEYS[2 * i]
  if ARGV[1] ~= "0" and redis.call("EXISTS", day) == 1 then redis.call("INCRBY", day, ARGV[1]) end
  if ARGV[2] ~= "0" and redis.call("HEXISTS", spend, "s") == 1 then redis.call("HINCRBY", spend, "s", ARGV[2]) end
end
return 1
`)
