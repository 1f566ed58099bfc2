"""The Lua scripts of the Redis outbox (engine/delivery/redis_outbox.py).

Every change of a delivery runs inside one script, so Redis applies it whole, with its
indexes, before any other client's command: that is what makes `claim` exclusive when
several dispatchers in several processes reach for the same due delivery, and what keeps
a digest's message and its members from ever disagreeing.

`ARGV[1]` of every script is the outbox's key prefix (`{prefix}outbox:`). The keys under it:

    d:{id}                     HASH   one delivery (the SQLite columns; null = no field)
    seq                        STRING the last delivery id given (INCR)
    u                          HASH   "alert_id US destination US purpose" -> id (unique)
    a:{alert_id}               ZSET   the alert's delivery ids (score = id)
    routes                     HASH   alert_id -> JSON [routed_at, window_end, note]
    routed_through             STRING the notify position up to which all are routed
    dests                      SET    every destination that has had a delivery
    counts                     HASH   status -> number of deliveries
    s:{status}                 ZSET   id -> finished_at, else queued_at (newest first lists)
    sd:{status}:{destination}  ZSET   id -> id (a destination's rows of a status, in order)
    due:{destination}          ZSET   pending id -> max(next_attempt_at, lease_until)
    age:{destination}          ZSET   pending id -> queued_at (what may expire)
    dg:{destination}           ZSET   unsealed digest member id -> queued_at
    m:{message}:{destination}  ZSET   a digest message's member ids
    summary                    SET    ids of sent notifications owed a summary on close
    dest:{destination}         HASH   paused_until, consecutive_failures, reason
    silences                   HASH   silence_id -> JSON; `lifted` HASH silence_id -> time

Keys are built inside the scripts, so the outbox needs a standalone Redis (or one whose
keys all hash to one slot), as the state store does. Times are the callers' wall-clock
epoch seconds, passed and stored as Python's `repr` of the float so they read back equal.
"""

from __future__ import annotations

_COMMON = r"""
local P = ARGV[1]
local FIELDS = {'delivery_id', 'alert_id', 'destination', 'purpose', 'status', 'queued_at',
  'next_attempt_at', 'attempts', 'last_attempt_at', 'lease_until', 'finished_at',
  'http_status', 'reason', 'notice', 'payload', 'event_count', 'summary_due', 'digest_id'}

local function num(v)
  if v == nil or v == '' then return nil end
  return tonumber(v)
end

local function load(id)
  local flat = redis.call('HGETALL', P .. 'd:' .. id)
  if #flat == 0 then return nil end
  local row = {}
  for i = 1, #flat, 2 do row[flat[i]] = flat[i + 1] end
  return row
end

local function copy(row)
  local new = {}
  for k, v in pairs(row) do new[k] = v end
  return new
end

local function flatten(row)
  local flat = {}
  for _, f in ipairs(FIELDS) do
    if row[f] ~= nil then flat[#flat + 1] = f; flat[#flat + 1] = row[f] end
  end
  return flat
end

-- Add a row to (or take it out of) every index its fields put it in.
local function indexes(row, add)
  local id = row.delivery_id
  local dest = row.destination
  local status = row.status
  local function z(key, score)
    if add then redis.call('ZADD', key, score, id) else redis.call('ZREM', key, id) end
  end
  z(P .. 's:' .. status, num(row.finished_at) or num(row.queued_at))
  z(P .. 'sd:' .. status .. ':' .. dest, tonumber(id))
  redis.call('HINCRBY', P .. 'counts', status, add and 1 or -1)
  if status == 'pending' then
    z(P .. 'due:' .. dest, math.max(num(row.next_attempt_at), num(row.lease_until) or 0))
    z(P .. 'age:' .. dest, num(row.queued_at))
  elseif status == 'digest' then
    if row.digest_id then
      z(P .. 'm:' .. row.digest_id .. ':' .. dest, tonumber(id))
    else
      z(P .. 'dg:' .. dest, num(row.queued_at))
    end
  end
  if row.summary_due == '1' then
    redis.call(add and 'SADD' or 'SREM', P .. 'summary', id)
  end
end

-- Write a row's new version (`old`: its current one, nil for a new row), indexes included.
local function put(old, row)
  if old then indexes(old, false) end
  local key = P .. 'd:' .. row.delivery_id
  redis.call('DEL', key)
  redis.call('HSET', key, unpack(flatten(row)))
  indexes(row, true)
end

local function unique(alert_id, dest, purpose)
  return alert_id .. '\31' .. dest .. '\31' .. purpose
end

-- A new delivery, unless one exists for its (alert, destination, purpose).
local function insert(row)
  local u = unique(row.alert_id, row.destination, row.purpose)
  if redis.call('HEXISTS', P .. 'u', u) == 1 then return nil end
  local id = redis.call('INCR', P .. 'seq')
  row.delivery_id = tostring(id)
  row.attempts = row.attempts or '0'
  row.summary_due = row.summary_due or '0'
  row.reason = row.reason or ''
  row.notice = row.notice or ''
  redis.call('HSET', P .. 'u', u, id)
  redis.call('ZADD', P .. 'a:' .. row.alert_id, id, id)
  redis.call('SADD', P .. 'dests', row.destination)
  put(nil, row)
  return id
end

-- The members of a digest message that was sent or dead-lettered take its outcome.
local function settle_members(msg)
  if msg.purpose ~= 'digest' or (msg.status ~= 'sent' and msg.status ~= 'dead') then return end
  local key = P .. 'm:' .. msg.alert_id .. ':' .. msg.destination
  for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local row = load(id)
    if row and row.status == 'digest' and row.digest_id == msg.alert_id then
      local new = copy(row)
      new.status = msg.status
      new.finished_at = msg.finished_at
      new.http_status = msg.http_status
      new.lease_until = nil
      if msg.status == 'sent' then
        new.reason = 'sent in digest ' .. msg.alert_id
      else
        new.reason = 'digest ' .. msg.alert_id .. ': ' .. msg.reason
      end
      put(row, new)
    end
  end
end

local function optional(value)
  if value == '' then return nil end
  return value
end
"""

RECORD_ROUTES = r"""
-- ARGV: prefix, now, JSON [[alert_id, route JSON, [[destination, status, reason, notice]]]]
local now = ARGV[2]
for _, item in ipairs(cjson.decode(ARGV[3])) do
  redis.call('HSETNX', P .. 'routes', item[1], item[2])
  for _, plan in ipairs(item[3]) do
    local finished = now
    if plan[2] == 'pending' or plan[2] == 'digest' then finished = nil end
    insert({alert_id = item[1], destination = plan[1], purpose = 'opened', status = plan[2],
      queued_at = now, next_attempt_at = now, finished_at = finished, reason = plan[3],
      notice = plan[4]})
  end
end
return 0
"""

SETTLE_SUMMARY = r"""
-- ARGV: prefix, delivery id, alert id, destination, now, status ('' for none), reason
local row = load(ARGV[2])
if row then
  local new = copy(row)
  new.summary_due = '0'
  put(row, new)
end
if ARGV[6] ~= '' then
  local finished = ARGV[5]
  if ARGV[6] == 'pending' then finished = nil end
  insert({alert_id = ARGV[3], destination = ARGV[4], purpose = 'closed', status = ARGV[6],
    queued_at = ARGV[5], next_attempt_at = ARGV[5], finished_at = finished, reason = ARGV[7]})
end
return 0
"""

NEXT_DUE = r"""
-- ARGV: prefix, destination, now. The lowest id among pending rows due now.
local now = tonumber(ARGV[3])
local due = P .. 'due:' .. ARGV[2]
if #redis.call('ZRANGEBYSCORE', due, '-inf', ARGV[3], 'LIMIT', 0, 1) == 0 then return nil end
local start = 0
while true do
  local ids = redis.call('ZRANGE', P .. 'sd:pending:' .. ARGV[2], start, start + 99)
  if #ids == 0 then return nil end
  for _, id in ipairs(ids) do
    local score = redis.call('ZSCORE', due, id)
    if score and tonumber(score) <= now then return flatten(load(id)) end
  end
  start = start + 100
end
"""

# When a pending delivery gives up: `limit` seconds after it was queued, or `grace` later
# when its final attempt is scheduled right at the limit, and never while a lease holds.
_EXPIRES_AT = r"""
local function expires_at(row, limit, grace)
  local queued = num(row.queued_at)
  local extra = 0
  if tonumber(row.attempts) > 0 and num(row.next_attempt_at) <= queued + limit then
    extra = grace
  end
  return math.max(num(row.lease_until) or 0, queued + limit + extra)
end
"""

QUEUE_TIMES = (
    _EXPIRES_AT
    + r"""
-- ARGV: prefix, destination, limit, grace -> {first due, first expiry} or nil
local first = redis.call('ZRANGE', P .. 'due:' .. ARGV[2], 0, 0, 'WITHSCORES')
if #first == 0 then return nil end
local limit, grace = tonumber(ARGV[3]), tonumber(ARGV[4])
local best = nil
local start = 0
-- Rows in queueing order: none expires before its queued_at + limit, so stop there.
while true do
  local page = redis.call('ZRANGE', P .. 'age:' .. ARGV[2], start, start + 99, 'WITHSCORES')
  if #page == 0 then break end
  for i = 1, #page, 2 do
    if best and tonumber(page[i + 1]) + limit >= best then
      return {first[2], string.format('%.17g', best)}
    end
    local at = expires_at(load(page[i]), limit, grace)
    if best == nil or at < best then best = at end
  end
  start = start + 100
end
return {first[2], string.format('%.17g', best)}
"""
)

CLAIM = r"""
-- ARGV: prefix, id, now, lease_until, payload, event_count
local row = load(ARGV[2])
if not row or row.status ~= 'pending' then return nil end
local lease = num(row.lease_until)
if lease and lease > tonumber(ARGV[3]) then return nil end
local new = copy(row)
new.lease_until = ARGV[4]
new.attempts = tostring(tonumber(row.attempts) + 1)
new.last_attempt_at = ARGV[3]
if new.payload == nil then new.payload = ARGV[5] end
if new.event_count == nil then new.event_count = ARGV[6] end
put(row, new)
return flatten(new)
"""

# The claim an outcome is recorded under: ARGV[i] is the `lease_until` the claim set, or
# '' for a delivery settled without an attempt (then: no live claim at `now`, ARGV[j]).
_UNDER_CLAIM = r"""
local function under_claim(row, lease, now)
  if row.status ~= 'pending' then return false end
  local held = num(row.lease_until)
  if lease == '' then return held == nil or held <= tonumber(now) end
  return held ~= nil and held == tonumber(lease)
end
"""

FINISH = (
    _UNDER_CLAIM
    + r"""
-- ARGV: prefix, id, status, now, reason, http_status ('' for none), summary_due (0|1),
-- lease. 0, and nothing written, unless the row is still pending under that claim.
local row = load(ARGV[2])
if not row or not under_claim(row, ARGV[8], ARGV[4]) then return 0 end
local new = copy(row)
new.status = ARGV[3]
new.finished_at = ARGV[4]
new.lease_until = nil
new.reason = ARGV[5]
new.http_status = optional(ARGV[6])
new.summary_due = ARGV[7]
put(row, new)
settle_members(new)
return 1
"""
)

RESCHEDULE = (
    _UNDER_CLAIM
    + r"""
-- ARGV: prefix, id, next_attempt_at, reason, http_status ('' for none), lease. 0, and
-- nothing written, unless the row is still pending under that claim.
local row = load(ARGV[2])
if not row or not under_claim(row, ARGV[6], '0') then return 0 end
local new = copy(row)
new.next_attempt_at = ARGV[3]
new.lease_until = nil
new.reason = ARGV[4]
new.http_status = optional(ARGV[5])
put(row, new)
return 1
"""
)

EXPIRE = (
    _EXPIRES_AT
    + r"""
-- ARGV: prefix, destination, limit, grace, now, why
local limit, grace, now = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
-- Only rows queued `limit` ago can have expired (a second of slack against rounding).
local ids = redis.call('ZRANGEBYSCORE', P .. 'age:' .. ARGV[2], '-inf', now - limit + 1)
local count = 0
for _, id in ipairs(ids) do
  local row = load(id)
  if row and row.status == 'pending' and expires_at(row, limit, grace) <= now then
    local new = copy(row)
    new.status = 'dead'
    new.finished_at = ARGV[5]
    if row.reason == '' then
      new.reason = ARGV[6]
    else
      new.reason = ARGV[6] .. '; last error: ' .. row.reason
    end
    put(row, new)
    settle_members(new)
    count = count + 1
  end
end
return count
"""
)

DEAD_LETTER_DESTINATIONS = r"""
-- ARGV: prefix, now, then (destination, reason) pairs: their pending and digest rows
-- become dead letters.
local count = 0
for i = 3, #ARGV, 2 do
  for _, status in ipairs({'pending', 'digest'}) do
    for _, id in ipairs(redis.call('ZRANGE', P .. 'sd:' .. status .. ':' .. ARGV[i], 0, -1)) do
      local row = load(id)
      local new = copy(row)
      new.status = 'dead'
      new.finished_at = ARGV[2]
      new.lease_until = nil
      new.reason = ARGV[i + 1]
      put(row, new)
      count = count + 1
    end
  end
end
return count
"""

UNDIGEST = r"""
-- ARGV: prefix, destination, now
local count = 0
for _, id in ipairs(redis.call('ZRANGE', P .. 'dg:' .. ARGV[2], 0, -1)) do
  local row = load(id)
  local new = copy(row)
  new.status = 'pending'
  new.queued_at = ARGV[3]
  new.next_attempt_at = ARGV[3]
  put(row, new)
  count = count + 1
end
return count
"""

SEAL_DIGEST = r"""
-- ARGV: prefix, destination, now, JSON [[[key, payload, [member id]]], [[id, status, reason]]]
-- 0, and nothing written, when any of the rows was sealed or settled by someone else.
local dest, now = ARGV[2], ARGV[3]
local plan = cjson.decode(ARGV[4])
local messages, settled = plan[1], plan[2]
local function free(id)
  local row = load(tostring(id))
  return row and row.status == 'digest' and row.digest_id == nil
end
for _, message in ipairs(messages) do
  for _, id in ipairs(message[3]) do
    if not free(id) then return 0 end
  end
end
for _, item in ipairs(settled) do
  if not free(item[1]) then return 0 end
end
for _, message in ipairs(messages) do
  insert({alert_id = message[1], destination = dest, purpose = 'digest', status = 'pending',
    queued_at = now, next_attempt_at = now, payload = message[2],
    event_count = tostring(#message[3])})
  for _, id in ipairs(message[3]) do
    local row = load(tostring(id))
    local new = copy(row)
    new.digest_id = message[1]
    put(row, new)
  end
end
for _, item in ipairs(settled) do
  local row = load(tostring(item[1]))
  local new = copy(row)
  new.status = item[2]
  new.finished_at = now
  new.reason = item[3]
  put(row, new)
end
return 1
"""

REQUEUE = r"""
-- ARGV: prefix, now, alert id ('' for every alert), destination ('' for all: names are
-- never empty), status...
local now, alert, dest = ARGV[2], ARGV[3], ARGV[4]
local wanted = {}
for i = 5, #ARGV do wanted[ARGV[i]] = true end
local rows = {}
local function consider(id)
  local row = load(id)
  if row and wanted[row.status] and (dest == '' or row.destination == dest) then
    rows[#rows + 1] = row
  end
end
if alert ~= '' then
  for _, id in ipairs(redis.call('ZRANGE', P .. 'a:' .. alert, 0, -1)) do consider(id) end
else
  for i = 5, #ARGV do
    local key = P .. 's:' .. ARGV[i]
    if dest ~= '' then key = P .. 'sd:' .. ARGV[i] .. ':' .. dest end
    for _, id in ipairs(redis.call('ZRANGE', key, 0, -1)) do consider(id) end
  end
end
local function fresh(row, status)
  local new = copy(row)
  new.status = status
  new.queued_at = now
  new.next_attempt_at = now
  new.attempts = '0'
  new.lease_until = nil
  new.finished_at = nil
  new.http_status = nil
  new.reason = 'requeued by detect alerts retry'
  return new
end
local count = 0
local moved = {}
if alert == '' then
  -- A digest message is sent again whole: it cannot be rendered anew.
  for _, row in ipairs(rows) do
    if row.purpose == 'digest' then
      put(row, fresh(row, 'pending'))
      count = count + 1
    end
  end
  -- Its members wait for it again.
  for i, row in ipairs(rows) do
    if row.purpose ~= 'digest' and row.digest_id then
      local id = redis.call('HGET', P .. 'u', unique(row.digest_id, row.destination, 'digest'))
      local message = id and load(id)
      if message and message.status == 'pending' then
        put(row, fresh(row, 'digest'))
        moved[i] = true
      end
    end
  end
end
-- Everything else goes on its own, rendered anew from the alert.
for i, row in ipairs(rows) do
  if row.purpose ~= 'digest' and not moved[i] then
    local new = fresh(row, 'pending')
    new.payload = nil
    new.event_count = nil
    new.digest_id = nil
    put(row, new)
    count = count + 1
  end
end
return count
"""

ROUTED_THROUGH = r"""
-- ARGV: prefix, position. Raised, never lowered, whoever of two workers writes last.
local key = P .. 'routed_through'
if tonumber(ARGV[2]) > tonumber(redis.call('GET', key) or '0') then
  redis.call('SET', key, ARGV[2])
end
return 0
"""

LIFT_SILENCE = r"""
-- ARGV: prefix, silence id, now
if redis.call('HEXISTS', P .. 'silences', ARGV[2]) == 0 then return 0 end
return redis.call('HSETNX', P .. 'lifted', ARGV[2], ARGV[3])
"""


# Each script's full source (the shared helpers, then its body), by the name the outbox
# runs it under.
SCRIPTS = {
    name: _COMMON + body
    for name, body in {
        "record_routes": RECORD_ROUTES,
        "settle_summary": SETTLE_SUMMARY,
        "next_due": NEXT_DUE,
        "queue_times": QUEUE_TIMES,
        "claim": CLAIM,
        "finish": FINISH,
        "reschedule": RESCHEDULE,
        "expire": EXPIRE,
        "dead_letter_destinations": DEAD_LETTER_DESTINATIONS,
        "undigest": UNDIGEST,
        "seal_digest": SEAL_DIGEST,
        "requeue": REQUEUE,
        "lift_silence": LIFT_SILENCE,
        "routed_through": ROUTED_THROUGH,
    }.items()
}
