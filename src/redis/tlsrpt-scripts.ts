/**
 * The Lua scripts of the Redis TLS-RPT store. Each runs atomically in Redis, so members of a fleet never lose or
 * double an increment (RFC 8460 §4.1: one report per policy domain per UTC day, counting every member's sessions).
 *
 * Record hash fields (`<prefix>tlsrpt:<day>:<policy-domain>`):
 * `v` format (1) · `rev` merges so far · `np` policies · `p:<ph>` policy JSON · `s:<ph>` / `f:<ph>` successful /
 * failed sessions · `nd:<ph>` distinct failure details · `d:<ph>:<fh>` failure detail JSON · `c:<ph>:<fh>` its
 * count · `delivery` delivery state JSON. `<ph>` / `<fh>` are hashes of the policy / failure identity.
 */

/**
 * KEYS: record, index, merge marker. ARGV: delta JSON, maxPolicies, maxDetails, expireAt (ms), index member,
 * maxRecords, marker ms. The marker (`SET NX`) makes a merge apply at most once: a merge that a client abandoned
 * (timeout) and that Redis runs later anyway, or that the client replays after a reconnect, finds it taken (-2):
 * either by its own earlier run, or by the fence the store sets before it merges those counts again.
 * Applies the same caps as `mergeDomainDayCounts`: new policies past `maxPolicies` are dropped (returned count),
 * new details past `maxDetails` fold into the overflow detail of their result type. Returns dropped sessions, or
 * -1 when the record is new and the index already holds `maxRecords` records.
 */
export const MERGE_SCRIPT = `
local k = KEYS[1]
if not redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[7]) then return -2 end
if redis.call('EXISTS', k) == 0 and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return -1 end
local delta = cjson.decode(ARGV[1])
local maxP = tonumber(ARGV[2])
local maxD = tonumber(ARGV[3])
local dropped = 0
redis.call('HSET', k, 'v', '1')
for _, p in ipairs(delta) do
  local ph = p.ph
  local known = redis.call('HEXISTS', k, 'p:' .. ph) == 1
  if not known and tonumber(redis.call('HGET', k, 'np') or '0') < maxP then
    redis.call('HSET', k, 'p:' .. ph, p.p)
    redis.call('HINCRBY', k, 'np', 1)
    known = true
  end
  if known then
    redis.call('HINCRBY', k, 's:' .. ph, p.s)
    redis.call('HINCRBY', k, 'f:' .. ph, p.f)
    for _, d in ipairs(p.d) do
      local fh = d.fh
      if redis.call('HEXISTS', k, 'd:' .. ph .. ':' .. fh) == 0 then
        if d.ov then
          redis.call('HSET', k, 'd:' .. ph .. ':' .. fh, d.j)
        elseif tonumber(redis.call('HGET', k, 'nd:' .. ph) or '0') < maxD then
          redis.call('HSET', k, 'd:' .. ph .. ':' .. fh, d.j)
          redis.call('HINCRBY', k, 'nd:' .. ph, 1)
        else
          fh = d.o
          redis.call('HSETNX', k, 'd:' .. ph .. ':' .. fh, d.oj)
        end
      end
      redis.call('HINCRBY', k, 'c:' .. ph .. ':' .. fh, d.c)
    end
  else
    dropped = dropped + tonumber(p.s) + tonumber(p.f)
  end
end
redis.call('HINCRBY', k, 'rev', 1)
redis.call('PEXPIREAT', k, ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[5])
return dropped
`;

/**
 * KEYS: record, report lock. ARGV: token, lock ms, '1' to claim the report. Returns the record's fields (HGETALL),
 * or 0 when another member holds the report. Claiming takes (or extends) the per-report lock, so one member at a
 * time builds and sends a closed day's report.
 */
export const GET_SCRIPT = `
if ARGV[3] == '1' then
  local cur = redis.call('GET', KEYS[2])
  if cur == false then
    if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
    redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
  elseif cur == ARGV[1] then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  else
    return 0
  end
end
return redis.call('HGETALL', KEYS[1])
`;

/** KEYS: record, report lock. ARGV: token, delivery JSON. -1: another member holds the report; 0: no record. */
export const SET_DELIVERY_SCRIPT = `
local cur = redis.call('GET', KEYS[2])
if cur ~= false and cur ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'delivery', ARGV[2])
return 1
`;

/**
 * KEYS: record, report lock, index. ARGV: token, revision read ('' = unknown), index member, counts read (JSON
 * object field -> count). Deletes the record when nothing was merged since it was read; otherwise subtracts what
 * was read (it was reported) and clears the delivery state, so later counts make a separate report. Releases the
 * lock. -1: another member holds the report (nothing changed).
 */
export const DELETE_SCRIPT = `
local cur = redis.call('GET', KEYS[2])
if cur ~= false and cur ~= ARGV[1] then return -1 end
local rev = redis.call('HGET', KEYS[1], 'rev')
if ARGV[2] == '' or rev == false or rev == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
else
  for field, n in pairs(cjson.decode(ARGV[4])) do
    redis.call('HINCRBY', KEYS[1], field, -tonumber(n))
  end
  redis.call('HDEL', KEYS[1], 'delivery')
end
if cur ~= false then redis.call('DEL', KEYS[2]) end
return 1
`;

