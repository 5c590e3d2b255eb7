package quota

import "github.com/redis/go-redis/v9"

// sliceScript decides a request exactly as admitScript does and, when it
// is admitted, takes with it a slice of every limited allowance for the
// replica to admit later requests from without asking: up to the wanted
// requests, tokens, money and concurrency slots, and never more than
// 1/(2·replicas) of what each level has left after the request, where
// replicas is at least the slices the level's registry holds plus one.
// Near a limit that is nothing, and every request is decided here, one
// at a time.
//
// The request and its slice are taken as one: RPM and TPM tats move by
// 1 + the slice's requests and the request's tokens + the slice's, the
// day's counter by those tokens. Where a level caps concurrency or has
// a budget, the slice is a lease "<slice id>/<money held>" (the
// request's cost bound and the slice's money where there is a budget)
// and, with a cap, one more lease "<slice id>+<j>" for each extra slot.
// Every level registers the slice in its registry (a sorted set of slice
// ids by expiry). syncScript gives back what the slice does not use.
//
// KEYS as admitScript's plus each level's registry (six per level), ARGV
// as admitScript's (ARGV[5] is the slice id), then: requests, tokens,
// money and slots wanted, replicas. It answers as admitScript does, then
// the slice's requests, tokens, money and slots beyond the request's.
var sliceScript = redis.NewScript(luaNow + "local per = 6\n" + luaDecide + `
local nargs = 10 + 6 * levels
local want = {tonumber(ARGV[nargs + 1]), tonumber(ARGV[nargs + 2]), tonumber(ARGV[nargs + 3]), tonumber(ARGV[nargs + 4])}
local replicas = tonumber(ARGV[nargs + 5])
local expiry = string.format("%d", math.ceil(now + lease_ttl))

-- share is how much of each allowance the slice may take at every level.
local function share(states)
  local xr, xt, xm, xc = want[1], want[2], want[3], want[4]
  local cut = string.format("%d", math.floor(now))
  for i = 0, levels - 1 do
    local s, k = states[i + 1], per * i
    redis.call("ZREMRANGEBYSCORE", KEYS[k + 6], "-inf", cut)
    local f = 2 * math.max(replicas, redis.call("ZCARD", KEYS[k + 6]) + 1)
    if s.rpm > 0 then xr = math.min(xr, math.floor(s.r_rem / f)) end
    if s.tpm > 0 then xt = math.min(xt, math.floor(s.t_rem / f)) end
    if s.tpd > 0 then xt = math.min(xt, math.floor((s.tpd - s.d_used - cost) / f)) end
    if s.budget > 0 then
      xm = math.min(xm, math.floor((s.budget - tonumber(s.spent) - tonumber(s.held) - tonumber(money)) / f))
    end
    if s.conc > 0 then xc = math.min(xc, math.floor((s.conc - s.inflight - 1) / f)) end
  end
  return math.max(xr, 0), math.max(xt, 0), math.max(xm, 0), math.max(xc, 0)
end

-- take writes one level's part of the request and its slice.
local function take(k, s, xr, xt, xm, xc)
  if s.rpm > 0 then
    local tat = s.r_tat + (60 / s.rpm) * xr
    if tat > now then redis.call("SET", KEYS[k + 1], tat, "EX", "61") end
  end
  if s.tpm > 0 then
    local tat = s.t_tat + (60 / s.tpm) * xt
    if tat > now then redis.call("SET", KEYS[k + 2], tat, "EX", "61") end
  end
  local n = cost + xt
  if n > 0 and redis.call("INCRBY", KEYS[k + 3], n) == n then
    redis.call("EXPIRE", KEYS[k + 3], ARGV[9]) -- a new day's counter
  end
  if s.conc > 0 or s.budget > 0 then
    local held = "0"
    if s.budget > 0 then held = string.format("%d", tonumber(money) + xm) end
    local args = {expiry, lease .. "/" .. held}
    if s.conc > 0 then
      for j = 1, xc do args[#args + 1], args[#args + 2] = expiry, lease .. "+" .. j end
    end
    redis.call("ZADD", KEYS[k + 4], unpack(args))
    redis.call("EXPIRE", KEYS[k + 4], ARGV[10])
    if held ~= "0" then redis.call("HINCRBY", KEYS[k + 5], "h", held) end
  end
  redis.call("ZADD", KEYS[k + 6], expiry, lease)
  redis.call("EXPIRE", KEYS[k + 6], ARGV[10])
end

local states, denied, level, retry, hopeless = decide_all()
if denied == -1 then return {-1, level, 0, 0} end
local xr, xt, xm, xc = 0, 0, 0, 0
if denied == 0 then
  xr, xt, xm, xc = share(states)
  for i = 0, levels - 1 do take(per * i, states[i + 1], xr, xt, xm, xc) end
end
local out = answer(states, denied, level, retry, hopeless)
out[#out + 1], out[#out + 2], out[#out + 3], out[#out + 4] = xr, xt, xm, xc
return out
`)

// syncScript brings a slice's account in Redis up to date, at every
// level: the money it holds now (its lease is replaced, and the spend
// hash's h moves by the difference), the slots it holds now (extra slot
// leases past them go), the cost of the requests it admitted that have
// settled since (added to the month's spending where that counter is
// kept), the requests it gives back (RPM's tat moves back, never before
// now), and tokens: positive charges (a debt), negative gives back, on
// TPM's tat and the day's counter as settleScript moves them. A lease or
// registration Redis lost or expired is written again, as what it holds
// is still in use; renew ("1") writes the slot leases' expiry too. final:
// the slice is done and all of it goes.
//
// KEYS as sliceScript's, six per level. ARGV: now ("" = Redis TIME),
// slice id, money held before, money held now, cost settled, requests
// given back, tokens, final ("1"), lease ttl, the leases' key ttl, slots
// before, slots now, renew, then per level rpm, tpm, whether it has a
// budget and whether it caps concurrency ("1"). It answers each level's
// spending before the cost was added ("" where none is kept).
var syncScript = redis.NewScript(luaNow + luaMoveTokens + `
local id, old, new, cost = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local back, delta, final = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == "1"
local expiry = string.format("%d", math.ceil(now + tonumber(ARGV[9])))
local slots_was, slots, renew = tonumber(ARGV[11]), tonumber(ARGV[12]), ARGV[13] == "1"
if final then slots = 0 end
local out = {}
for i = 0, #KEYS / 6 - 1 do
  local k, a = 6 * i, 14 + 4 * i
  local rpm, tpm = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local budget, conc = ARGV[a + 2] == "1", ARGV[a + 3] == "1"
  if budget or conc then
    local was, now_held = "0", "0"
    if budget then was, now_held = old, new end
    if redis.call("ZREM", KEYS[k + 4], id .. "/" .. was) == 1 and was ~= "0" then
      redis.call("HINCRBY", KEYS[k + 5], "h", "-" .. was)
    end
    if not final then
      redis.call("ZADD", KEYS[k + 4], expiry, id .. "/" .. now_held)
      if now_held ~= "0" then
        redis.call("HINCRBY", KEYS[k + 5], "h", now_held)
        if redis.call("TTL", KEYS[k + 5]) < 0 then redis.call("EXPIRE", KEYS[k + 5], 3456000) end
      end
    end
    if conc then
      for j = math.max(slots, 1), slots_was - 1 do redis.call("ZREM", KEYS[k + 4], id .. "+" .. j) end
      if renew then
        for j = 1, slots - 1 do redis.call("ZADD", KEYS[k + 4], expiry, id .. "+" .. j) end
      end
    end
    redis.call("EXPIRE", KEYS[k + 4], ARGV[10])
  end
  if final then
    redis.call("ZREM", KEYS[k + 6], id)
  else
    redis.call("ZADD", KEYS[k + 6], expiry, id)
    redis.call("EXPIRE", KEYS[k + 6], ARGV[10])
  end
  local before = redis.call("HGET", KEYS[k + 5], "s")
  if before and cost ~= "0" then redis.call("HINCRBY", KEYS[k + 5], "s", cost) end
  out[i + 1] = before or ""
  if rpm > 0 and back > 0 then
    local tat = tonumber(redis.call("GET", KEYS[k + 1]) or now)
    local new_tat = math.max(tat - (60 / rpm) * back, now)
    if new_tat > now then
      redis.call("SET", KEYS[k + 1], new_tat, "EX", math.max(1, math.ceil(new_tat - now)))
    else
      redis.call("DEL", KEYS[k + 1])
    end
  end
  move_tokens(KEYS[k + 2], KEYS[k + 3], tpm, delta)
end
return out
`)
