"""The Lua scripts of the Redis state store: a commit and a purge, each fenced by the
partition's lease and applied as one script, so Redis runs it whole with no other
client's command in between (docs/state.md has the key layout).

Redis does not roll a script back when a command in it fails half-way, so the commit
script checks everything that could make a write fail (the lease, then the type of
every key it will add to) before it writes anything: it applies all or nothing. The
`#!lua` line makes Redis refuse the script before it starts when the server is out of
memory, rather than on the first write.

A script answers 0 when the lease is not this worker's (nothing written), or an error
reply naming the key of the wrong type.
"""

from __future__ import annotations

# The fence, shared by both scripts: ARGV[1] is the lease key ('' without a lease),
# ARGV[2] this worker's token.
_FENCE = """
if ARGV[1] ~= '' and redis.call('GET', ARGV[1]) ~= ARGV[2] then
  return 0
end
"""

# ARGV after the fence: 3 the partition's base ({prefix}p:{partition}:), 4 the store's
# prefix, 5 the partition, 6-9 the counts of puts, deletes, meta entries and alerts,
# then the entries:
#   put    namespace, key, json, expires ('' for none), ttl in ms ('' for none)
#   delete namespace, key
#   meta   key, json
#   alert  id, json, notify ('1' owes a notification), opened (epoch), kind
COMMIT = (
    "#!lua\n"
    + _FENCE
    + """
local base, prefix, partition = ARGV[3], ARGV[4], ARGV[5]
local nput, ndel, nmeta, nalert = tonumber(ARGV[6]), tonumber(ARGV[7]),
  tonumber(ARGV[8]), tonumber(ARGV[9])
local first = 10
local dels_at = first + nput * 5
local meta_at = dels_at + ndel * 2
local alerts_at = meta_at + nmeta * 2

-- Every container this commit adds to, with the type it must have (or be absent).
local want = {}
want[base .. 'ns'] = 'set'
want[prefix .. 'partitions'] = 'set'
want[base .. 'meta'] = 'hash'
if nalert > 0 then
  want[prefix .. 'alerts:seq'] = 'string'
  want[prefix .. 'alerts:notify'] = 'zset'
  want[prefix .. 'alerts:opened'] = 'zset'
  want[prefix .. 'alerts:ids'] = 'zset'
  want[prefix .. 'alerts:kinds'] = 'hash'
end
local namespaces = {}
for i = first, dels_at - 1, 5 do namespaces[ARGV[i]] = true end
for i = dels_at, meta_at - 1, 2 do namespaces[ARGV[i]] = true end
for ns in pairs(namespaces) do
  want[base .. 'x:' .. ns] = 'zset'
  want[base .. 'k:' .. ns] = 'set'
end
for key, kind in pairs(want) do
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    return redis.error_reply('state key ' .. key .. ' holds a ' .. found .. ', not a ' .. kind)
  end
end

-- The expiring index of a namespace lives as long as its longest-lived value, so an
-- abandoned partition's index goes with its values; it stays when a value of it has
-- no TTL (put before the partition had a watermark).
local index = {}
for i = first, dels_at - 1, 5 do
  local ns, key, json, expires, ttl = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local value = base .. 'v:' .. ns .. ':' .. key
  redis.call('SADD', base .. 'ns', ns)
  if expires == '' then
    redis.call('SET', value, json)
    redis.call('SADD', base .. 'k:' .. ns, key)
    redis.call('ZREM', base .. 'x:' .. ns, key)
  else
    local xk = base .. 'x:' .. ns
    local seen = index[xk]
    if seen == nil then
      seen = {existed = redis.call('EXISTS', xk) == 1, longest = 0, keep = false}
      index[xk] = seen
    end
    if ttl == '' then
      redis.call('SET', value, json)
      seen.keep = true
    else
      redis.call('SET', value, json, 'PX', ttl)
      if tonumber(ttl) > seen.longest then seen.longest = tonumber(ttl) end
    end
    redis.call('ZADD', xk, expires, key)
    redis.call('SREM', base .. 'k:' .. ns, key)
  end
end
for xk, seen in pairs(index) do
  if seen.keep then
    redis.call('PERSIST', xk)
  elseif not seen.existed then
    redis.call('PEXPIRE', xk, seen.longest)
  else
    local left = redis.call('PTTL', xk)
    if left >= 0 and left < seen.longest then redis.call('PEXPIRE', xk, seen.longest) end
  end
end
for i = dels_at, meta_at - 1, 2 do
  local ns, key = ARGV[i], ARGV[i + 1]
  redis.call('DEL', base .. 'v:' .. ns .. ':' .. key)
  redis.call('ZREM', base .. 'x:' .. ns, key)
  redis.call('SREM', base .. 'k:' .. ns, key)
end
for i = meta_at, alerts_at - 1, 2 do
  redis.call('HSET', base .. 'meta', ARGV[i], ARGV[i + 1])
end
-- When the partition last committed, on the server's clock (one clock for every
-- worker): the shared watermark counts the partitions that committed lately.
local now = redis.call('TIME')
redis.call('HSET', base .. 'meta', 'committed_at', now[1] .. '.' .. string.format('%06d', now[2]))
redis.call('SADD', prefix .. 'partitions', partition)

-- Alerts are shared by every partition. A notification owed stays owed, and keeps the
-- position it was first given (ZADD only when absent).
for i = alerts_at, alerts_at + nalert * 5 - 1, 5 do
  local id, json, notify, opened, kind = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    ARGV[i + 4]
  local body = prefix .. 'alert:' .. id
  if redis.call('EXISTS', body) == 0 then
    redis.call('ZADD', prefix .. 'alerts:opened', opened, id)
    redis.call('ZADD', prefix .. 'alerts:ids', 0, id)
    redis.call('HINCRBY', prefix .. 'alerts:kinds', kind, 1)
  end
  redis.call('SET', body, json)
  if notify == '1' and not redis.call('ZSCORE', prefix .. 'alerts:notify', id) then
    local position = redis.call('INCR', prefix .. 'alerts:seq')
    redis.call('ZADD', prefix .. 'alerts:notify', position, id)
  end
end
return 1
"""
)

# ARGV after the fence: 3 the partition's base, 4 the event-time epoch before which
# values are dropped. Answers 1 + the number dropped (0 stays the fence's answer).
PURGE = (
    "#!lua\n"
    + _FENCE
    + """
local base, before = ARGV[3], '(' .. ARGV[4]
local dropped = 0
for _, ns in ipairs(redis.call('SMEMBERS', base .. 'ns')) do
  local xk = base .. 'x:' .. ns
  if redis.call('TYPE', xk)['ok'] == 'zset' then
    local keys = redis.call('ZRANGEBYSCORE', xk, '-inf', before)
    for _, key in ipairs(keys) do
      redis.call('DEL', base .. 'v:' .. ns .. ':' .. key)
    end
    if #keys > 0 then
      redis.call('ZREMRANGEBYSCORE', xk, '-inf', before)
      dropped = dropped + #keys
    end
  end
end
return 1 + dropped
"""
)
