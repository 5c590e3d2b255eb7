package quota

import "github.com/redis/go-redis/v9"

// sliceScript decides a request exactly as admitScript does and, when it
// is admitted, takes with it a slice of every limited allowance for the
// replica to admit later requests from without asking: up to the wanted
// requests, tokens and money, and never more than 1/(2·replicas) of what
// each level has left after the request, where replicas is at least the
// level's slices and leases in flight plus one. Near a limit that is
// nothing, and every request is decided here, one at a time.
//
// The request and its slice are taken as one: RPM and TPM tats move by
// 1 + the slice's requests and the request's tokens + the slice's, the
// day's counter by those tokens, and the slice is a lease member
// "<slice id>/<money held>" at every level, holding the request's cost
// bound and the slice's money where the level has a budget. syncScript
// gives back what the slice does not use.
//
// KEYS and ARGV as admitScript's (ARGV[5] is the slice id), then ARGV:
// requests, tokens and money wanted, replicas. It answers as admitScript
// does, then the slice's requests, tokens and money.
var sliceScript = redis.NewScript(luaNow + luaDecide + `
local nargs = 10 + 6 * levels
local want_r, want_t, want_m = tonumber(ARGV[nargs + 1]), tonumber(ARGV[nargs + 2]), tonumber(ARGV[nargs + 3])
local replicas = tonumber(ARGV[nargs + 4])

-- share is how much of each allowance the slice may take at every level.
local function share(states)
  local xr, xt, xm = want_r, want_t, want_m
  for i = 0, levels - 1 do
    local s, k = states[i + 1], 5 * i
    local f = 2 * math.max(replicas, redis.call("ZCARD", KEYS[k + 4]) + 1)
    if s.rpm > 0 then xr = math.min(xr, math.floor(s.r_rem / f)) end
    if s.tpm > 0 then xt = math.min(xt, math.floor(s.t_rem / f)) end
    if s.tpd > 0 then xt = math.min(xt, math.floor((s.tpd - s.d_used - cost) / f)) end
    if s.budget > 0 then
      xm = math.min(xm, math.floor((s.budget - tonumber(s.spent) - tonumber(s.held) - tonumber(money)) / f))
    end
  end
  return math.max(xr, 0), math.max(xt, 0), math.max(xm, 0)
end

-- take writes one level's part of the request and its slice.
local expiry = string.format("%d", math.ceil(now + lease_ttl))
local function take(k, s, xr, xt, xm)
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
  local held = "0"
  if s.budget > 0 then held = string.format("%d", tonumber(money) + xm) end
  redis.call("ZADD", KEYS[k + 4], expiry, lease .. "/" .. held)
  redis.call("EXPIRE", KEYS[k + 4], ARGV[10])
  if held ~= "0" then redis.call("HINCRBY", KEYS[k + 5], "h", held) end
end

local states, denied, level, retry, hopeless = decide_all()
if denied == -1 then return {-1, level, 0, 0} end
local xr, xt, xm = 0, 0, 0
if denied == 0 then
  xr, xt, xm = share(states)
  for i = 0, levels - 1 do take(5 * i, states[i + 1], xr, xt, xm) end
end
local out = answer(states, denied, level, retry, hopeless)
out[#out + 1], out[#out + 2], out[#out + 3] = xr, xt, xm
return out
`)

// syncScript brings a slice's account in Redis up to date, at every
// level: the money it holds now (its lease member is replaced, and the
// spend hash's h moves by the difference; a member Redis lost or expired
// is registered again, as the money is still held), the cost of the
// requests it admitted that have settled since (added to the month's
// spending where that counter is kept), the requests it gives back
// (RPM's tat moves back, never before now), and tokens: positive charges
// (a debt), negative gives back, on TPM's tat and the day's counter as
// settleScript moves them. final: the slice is done and its member goes.
//
// KEYS as admitScript's, five per level. ARGV: now ("" = Redis TIME),
// slice id, money held before, money held now, cost settled, requests
// given back, tokens, final ("1"), lease ttl, the leases' key ttl, then
// per level rpm, tpm and whether it has a budget ("1"). It answers each
// level's spending before the cost was added ("" where none is kept).
var syncScript = redis.NewScript(luaNow + `
local id, old, new, cost = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local back, delta, final = tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8] == "1"
local expiry = string.format("%d", math.ceil(now + tonumber(ARGV[9])))
local out = {}
for i = 0, #KEYS / 5 - 1 do
  local k, a = 5 * i, 11 + 3 * i
  local rpm, tpm, budget = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), ARGV[a + 2] == "1"
  local was, now_held = "0", "0"
  if budget then was, now_held = old, new end
  if redis.call("ZREM", KEYS[k + 4], id .. "/" .. was) == 1 and was ~= "0" then
    redis.call("HINCRBY", KEYS[k + 5], "h", "-" .. was)
  end
  if not final then
    redis.call("ZADD", KEYS[k + 4], expiry, id .. "/" .. now_held)
    redis.call("EXPIRE", KEYS[k + 4], ARGV[10])
    if now_held ~= "0" then
      redis.call("HINCRBY", KEYS[k + 5], "h", now_held)
      if redis.call("TTL", KEYS[k + 5]) < 0 then redis.call("EXPIRE", KEYS[k + 5], 3456000) end
    end
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
  if tpm > 0 and delta ~= 0 then
    local tat = math.max(tonumber(redis.call("GET", KEYS[k + 2]) or now), now)
    local new_tat = math.max(tat + (60 / tpm) * delta, now)
    if new_tat > now then
      redis.call("SET", KEYS[k + 2], new_tat, "EX", math.max(1, math.ceil(new_tat - now)))
    else
      redis.call("DEL", KEYS[k + 2])
    end
  end
  if delta ~= 0 then
    local left = redis.call("INCRBY", KEYS[k + 3], delta)
    if left == delta then
      redis.call("DEL", KEYS[k + 3]) -- lost: the ledger starts it again
    elseif left < 0 then
      redis.call("SET", KEYS[k + 3], 0, "KEEPTTL")
    end
  end
end
return out
`)
