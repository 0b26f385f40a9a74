/**
 * The Lua scripts of the Redis TLS-RPT store. Each runs atomically in Redis, so members of a fleet never lose or
 * double an increment (RFC 8460 §4.1: one report per policy domain per UTC day, counting every member's sessions).
 *
 * Record hash fields (`<prefix>tlsrpt:<day>:<policy-domain>`):
 * `v` format (1) · `rev` merges so far · `n` sessions counted · `np` policies · `p:<ph>` policy JSON · `s:<ph>` / `f:<ph>` successful /
 * failed sessions · `nd:<ph>` distinct failure details · `d:<ph>:<fh>` failure detail JSON · `c:<ph>:<fh>` its
 * count · `delivery` delivery state JSON. `<ph>` / `<fh>` are hashes of the policy / failure identity.
 */

/** Lua: Redis's clock in epoch ms (record expiries and the index are judged by it, never by a member's clock). */
const REDIS_NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * KEYS: record, index, checksums, sequence hash. ARGV: delta JSON, maxPolicies, maxDetails, expireAt (ms), index
 * member, maxRecords, sequence ms, sequence field, sequence number.
 *
 * At most once: the sequence hash (one per member process and day) holds, per policy domain, the highest merge
 * number applied or fenced; a merge whose number is not above it (a merge the client abandoned after a timeout and
 * that Redis runs later, or replays after a reconnect, once the store has fenced it) is refused (-2). One Redis
 * connection runs its commands in order, so numbers arrive in order.
 *
 * Applies the same caps as `mergeDomainDayCounts`: new policies past `maxPolicies` are dropped (returned count),
 * new details past `maxDetails` fold into the overflow detail of their result type. Keeps the record's session
 * total (`n`) and its checksum (the `checksums` hash, `member` -> sessions) in step.
 *
 * Returns {dropped sessions (-1: the record is new and the index already holds maxRecords; -2: refused), lost,
 * checksums existed}: `lost` > 0 is the number of sessions the checksum remembers for a record that is gone before
 * its expiry (Redis evicted it); -1 when the checksum is gone while the record exists (Redis evicted the checksums).
 * The checksums hash keeps a field `_` once created, so it never disappears by itself: a member that saw it and
 * finds it gone knows Redis evicted it.
 */
export const MERGE_SCRIPT = `
local k = KEYS[1]
local member = ARGV[5]
if tonumber(redis.call('HGET', KEYS[4], ARGV[8]) or '0') >= tonumber(ARGV[9]) then return {-2, 0} end
redis.call('HSET', KEYS[4], ARGV[8], ARGV[9])
redis.call('PEXPIRE', KEYS[4], ARGV[7])
${REDIS_NOW}
local exists = redis.call('EXISTS', k) == 1
if not exists and redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[6]) then return {-1, 0} end
local sumsExisted = redis.call('EXISTS', KEYS[3])
local sum = redis.call('HGET', KEYS[3], member)
local lost = 0
if exists and sum == false then
  lost = -1
elseif not exists and sum ~= false then
  if tonumber(sum) > 0 and now < tonumber(ARGV[4]) then lost = tonumber(sum) end
  redis.call('HDEL', KEYS[3], member)
end
local delta = cjson.decode(ARGV[1])
local maxP = tonumber(ARGV[2])
local maxD = tonumber(ARGV[3])
local dropped = 0
local added = 0
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
    added = added + tonumber(p.s) + tonumber(p.f)
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
local n = redis.call('HINCRBY', k, 'n', added)
redis.call('HINCRBY', k, 'rev', 1)
redis.call('PEXPIREAT', k, ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[4], member)
if lost == -1 then redis.call('HSET', KEYS[3], member, n) else redis.call('HINCRBY', KEYS[3], member, added) end
redis.call('HSETNX', KEYS[3], '_', '1')
return {dropped, lost, sumsExisted}
`;

/**
 * KEYS: sequence hash. ARGV: sequence field, number of a merge whose outcome is unknown, sequence ms. Returns 1 when
 * that merge was applied (the field is at or above its number), else fences it (sets the field to its number, so
 * the merge is refused if it ever arrives) and returns 0.
 */
export const FENCE_SCRIPT = `
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') >= tonumber(ARGV[2]) then return 1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
`;

/**
 * KEYS: index, checksums. ARGV: record key prefix (`<prefix>tlsrpt:`). Run by `list()`, against Redis's clock:
 * forgets expired records, then checks every record against its checksum. A record gone before its expiry, or
 * holding fewer sessions than its checksum, lost counts (Redis evicted it); a checksum or an index entry that is
 * gone while its record exists, or a record gone with its checksum, is evidence of eviction of an unknown number of
 * sessions (the record is re-indexed, the checksum re-seeded).
 * Returns {index members, {member, sessions lost (-1: unknown), ...}}.
 */
export const AUDIT_SCRIPT = `
${REDIS_NOW}
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do redis.call('HDEL', KEYS[2], m) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local keep, lost, seen = {}, {}, {}
local function recordKey(m)
  local bar = string.find(m, '|', 1, true)
  if not bar then return nil end
  return ARGV[1] .. string.sub(m, 1, bar - 1) .. ':' .. string.sub(m, bar + 1)
end
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  seen[m] = true
  local key = recordKey(m)
  local want = redis.call('HGET', KEYS[2], m)
  if key == nil or redis.call('EXISTS', key) == 0 then
    redis.call('ZREM', KEYS[1], m)
    redis.call('HDEL', KEYS[2], m)
    if key ~= nil and want == false then table.insert(lost, m); table.insert(lost, '-1')
    elseif key ~= nil and tonumber(want) > 0 then table.insert(lost, m); table.insert(lost, want) end
  else
    table.insert(keep, m)
    local have = redis.call('HGET', key, 'n') or want or '0'
    if want == false then
      redis.call('HSET', KEYS[2], m, have)
      table.insert(lost, m); table.insert(lost, '-1')
    elseif tonumber(have) < tonumber(want) then
      redis.call('HSET', KEYS[2], m, have)
      table.insert(lost, m); table.insert(lost, tostring(tonumber(want) - tonumber(have)))
    end
  end
end
local sums = redis.call('HGETALL', KEYS[2])
for i = 1, #sums, 2 do
  local m = sums[i]
  if m ~= '_' and not seen[m] then
    local key = recordKey(m)
    local ttl = key and redis.call('PTTL', key) or -2
    if ttl > 0 then
      redis.call('ZADD', KEYS[1], now + ttl, m)
      table.insert(keep, m)
      table.insert(lost, m); table.insert(lost, '-1')
    else
      redis.call('HDEL', KEYS[2], m)
      if key ~= nil and ttl == -2 and tonumber(sums[i + 1]) > 0 then table.insert(lost, m); table.insert(lost, sums[i + 1]) end
    end
  end
end
return {keep, lost}
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
 * KEYS: record, report lock, index, checksums. ARGV: token, revision read ('' = unknown), index member, counts read
 * (JSON object field -> count). Deletes the record (and its checksum) when nothing was merged since it was read;
 * otherwise subtracts what was read (it was reported) from the record, its total and its checksum and clears the
 * delivery state, so later counts make a separate report. Releases the lock. -1: another member holds the report
 * (nothing changed).
 */
export const DELETE_SCRIPT = `
local cur = redis.call('GET', KEYS[2])
if cur ~= false and cur ~= ARGV[1] then return -1 end
local rev = redis.call('HGET', KEYS[1], 'rev')
if ARGV[2] == '' or rev == false or rev == ARGV[2] then
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[3])
  redis.call('HDEL', KEYS[4], ARGV[3])
else
  local sessions = 0
  for field, n in pairs(cjson.decode(ARGV[4])) do
    redis.call('HINCRBY', KEYS[1], field, -tonumber(n))
    local kind = string.sub(field, 1, 2)
    if kind == 's:' or kind == 'f:' then sessions = sessions + tonumber(n) end
  end
  redis.call('HINCRBY', KEYS[1], 'n', -sessions)
  if redis.call('HEXISTS', KEYS[4], ARGV[3]) == 1 then redis.call('HINCRBY', KEYS[4], ARGV[3], -sessions) end
  redis.call('HDEL', KEYS[1], 'delivery')
end
if cur ~= false then redis.call('DEL', KEYS[2]) end
return 1
`;
