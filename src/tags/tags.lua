#!lua name=respite_tags_v1
-- respite's tag index (see src/tags/mod.rs for the layout). Every function
-- works inside one hash slot: the user key, its record and the entry sets of
-- its tags share the slot's hashtag. Arguments carry the name prefixes:
--   zp: entry set prefix (zp .. tag is the ZSET of keys under tag),
--   rp: record prefix (rp .. key holds the key's tags),
--   fl: flag hash of the slot ('' in standalone: no directory to confirm).

-- A record is the tags as netstrings: "3:foo5:hello".
local function decode(s)
  local out, i = {}, 1
  if not s then return out end
  while i <= #s do
    local c = string.find(s, ':', i, true)
    if not c then break end
    local n = tonumber(string.sub(s, i, c - 1))
    if not n then break end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    i = c + n + 1
  end
  return out
end

-- Whether the record `rec` (a GET reply) lists tag t. A missing record
-- counts as yes: an entry is only ever ignored when the key's own record
-- says it left the tag (a TAGSET that replaced its tags, whose removal of
-- the old entries has not run yet).
local function lists(rec, t)
  if not rec then return true end
  for _, x in ipairs(decode(rec)) do
    if x == t then return true end
  end
  return false
end

local function encode(list)
  local parts = {}
  for i, t in ipairs(list) do parts[i] = #t .. ':' .. t end
  return table.concat(parts)
end

-- Expiry of key in unix ms (server time), or 'inf' when it has none.
local function expiry(key)
  local pt = redis.call('PTTL', key)
  if pt < 0 then return 'inf' end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + pt
end

-- The entry set of tag t lost a member: when it is empty, its flag goes.
local function emptied(zp, fl, t)
  if fl ~= '' and redis.call('EXISTS', zp .. t) == 0 then
    redis.call('HDEL', fl, t)
  end
end

-- Remove every index entry of key (which is gone or being deleted).
local function forget(key, zp, rp, fl)
  local rec = rp .. key
  local old = redis.call('GET', rec)
  if old then
    for _, t in ipairs(decode(old)) do
      redis.call('ZREM', zp .. t, key)
      emptied(zp, fl, t)
    end
    redis.call('DEL', rec)
  end
end

-- Tags (by index into `tags`) whose directory entry is not confirmed yet,
-- as {index, token} pairs; marks new ones pending with a fresh token.
local function unconfirmed(fl, tags)
  local out = {}
  if fl == '' or #tags == 0 then return out end
  local f = redis.call('HMGET', fl, unpack(tags))
  local token = nil
  for i, v in ipairs(f) do
    if v ~= 'ok' then
      if not v then
        if not token then
          local t = redis.call('TIME')
          token = 'p:' .. t[1] .. '.' .. t[2]
        end
        v = token
        redis.call('HSET', fl, tags[i], v)
      end
      out[#out + 1] = i
      out[#out + 1] = v
    end
  end
  return out
end

-- KEYS: key, record, entry set per tag (and the flag hash in cluster mode,
-- for routing). ARGV: value, encoded tags, zp, fl,
-- expiry option ('' | EX | PX | EXAT | PXAT | KEEPTTL), its number,
-- condition ('' | NX | XX), tags...
-- Reply: SET's reply; in cluster mode with unconfirmed tags
-- {'confirm', index, token, ...}.
local function tagset(keys, args)
  local key = keys[1]
  local zp, fl = args[3], args[4]
  local set = {'SET', key, args[1]}
  if args[5] ~= '' then
    set[#set + 1] = args[5]
    if args[5] ~= 'KEEPTTL' then set[#set + 1] = args[6] end
  end
  if args[7] ~= '' then set[#set + 1] = args[7] end
  local r = redis.pcall(unpack(set))
  if type(r) == 'table' and r.err then return r end
  if not r then return r end
  local score = 'inf'
  if args[5] ~= '' then score = expiry(key) end
  local tags = {}
  for i = 8, #args do tags[#tags + 1] = args[i] end
  local old = redis.call('SET', keys[2], args[2], 'GET')
  -- The record lists exactly the entry sets holding the key, so a rewrite
  -- with the same tags and no expiry finds its entries in place. (Scores
  -- are hints: every removal re-checks the key itself.)
  if old ~= args[2] or score ~= 'inf' then
    for i = 1, #tags do redis.call('ZADD', zp .. tags[i], score, key) end
  end
  local pending = unconfirmed(fl, tags)
  if old and old ~= args[2] then
    -- Last, and errors ignored: in a slot being migrated these keys may be
    -- elsewhere; a stale entry only costs a re-check later.
    local keep = {}
    for _, t in ipairs(tags) do keep[t] = true end
    for _, t in ipairs(decode(old)) do
      if not keep[t] then
        redis.pcall('ZREM', zp .. t, key)
        if fl ~= '' then pcall(emptied, zp, fl, t) end
      end
    end
  end
  if #pending > 0 then
    table.insert(pending, 1, 'confirm')
    return pending
  end
  return r
end

-- KEYS: key, record, entry set per tag (+ flag hash). ARGV: zp, rp, fl, tags...
-- Reply: {added, index, token, ...} (unconfirmed tags as in tagset).
local function tagadd(keys, args)
  local key = keys[1]
  local zp, rp, fl = args[1], args[2], args[3]
  if redis.call('EXISTS', key) == 0 then
    forget(key, zp, rp, fl)
    return {0}
  end
  local cur = decode(redis.call('GET', keys[2]))
  local have = {}
  for _, t in ipairs(cur) do have[t] = true end
  local score = expiry(key)
  local added, tags = 0, {}
  for i = 4, #args do
    local t = args[i]
    tags[#tags + 1] = t
    if not have[t] then
      have[t] = true
      cur[#cur + 1] = t
      added = added + 1
    end
    redis.call('ZADD', zp .. t, score, key)
  end
  redis.call('SET', keys[2], encode(cur))
  local out = unconfirmed(fl, tags)
  table.insert(out, 1, added)
  return out
end

-- Run a variadic command over `list` in chunks (Lua's unpack is bounded);
-- the sum of the integer replies.
local function variadic(cmd, key, list)
  local sum, i = 0, 1
  while i <= #list do
    local part = {}
    for j = i, math.min(i + 499, #list) do part[#part + 1] = list[j] end
    local r
    if key then r = redis.call(cmd, key, unpack(part)) else r = redis.call(cmd, unpack(part)) end
    if type(r) == 'number' then sum = sum + r end
    i = i + 500
  end
  return sum
end

-- Deletes up to `batch` keys registered in the entry sets KEYS (one slot).
-- ARGV: zp, rp, fl, batch. Reply: {deleted, entries left}.
local function taginval(keys, args)
  local zp, rp, fl = args[1], args[2], args[3]
  local n, deleted = tonumber(args[4]), 0
  for _, z in ipairs(keys) do
    if n <= 0 then break end
    local members = redis.call('ZRANGE', z, 0, n - 1)
    if #members > 0 then
      -- Records first (same slot): an entry whose key's record no longer
      -- lists this tag is stale (the key was rewritten with other tags) and
      -- only goes from the set; the key stays.
      local this = string.sub(z, #zp + 1)
      local olds = {}
      for i = 1, #members, 500 do
        local part = {}
        for j = i, math.min(i + 499, #members) do part[#part + 1] = rp .. members[j] end
        local got = redis.call('MGET', unpack(part))
        for j = 1, #part do olds[i + j - 1] = got[j] end
      end
      local doomed, recs, docs = {}, {}, {}
      for i, m in ipairs(members) do
        if lists(olds[i], this) then
          doomed[#doomed + 1] = m
          recs[#recs + 1] = rp .. m
          docs[#docs + 1] = olds[i]
        end
      end
      -- The keys first: in a slot being migrated some may be elsewhere, and
      -- the call must fail before the index forgets them.
      deleted = deleted + variadic('UNLINK', nil, doomed)
      for i, m in ipairs(doomed) do
        for _, t in ipairs(decode(docs[i])) do
          if t ~= this then
            redis.call('ZREM', zp .. t, m)
            emptied(zp, fl, t)
          end
        end
      end
      variadic('UNLINK', nil, recs)
      variadic('ZREM', z, members)
    end
    n = n - #members
  end
  local left = 0
  for _, z in ipairs(keys) do
    local c = redis.call('ZCARD', z)
    if c == 0 then emptied(zp, fl, string.sub(z, #zp + 1)) end
    left = left + c
  end
  return {deleted, left}
end

-- A page of the entry set KEYS[1]: live keys, dead ones pruned.
-- ARGV: zp, rp, fl, offset, count. Reply: {entries read, live keys}.
local function tagkeys(keys, args)
  local zp, rp, fl = args[1], args[2], args[3]
  local off, n = tonumber(args[4]), tonumber(args[5])
  local members = redis.call('ZRANGE', keys[1], off, off + n - 1)
  local this = string.sub(keys[1], #zp + 1)
  local live = {}
  for _, m in ipairs(members) do
    if redis.call('EXISTS', m) == 1 then
      if lists(redis.call('GET', rp .. m), this) then
        live[#live + 1] = m
      else
        redis.call('ZREM', keys[1], m)
      end
    else
      forget(m, zp, rp, fl)
      redis.call('ZREM', keys[1], m)
    end
  end
  emptied(zp, fl, string.sub(keys[1], #zp + 1))
  return {#members, live}
end

-- KEYS: key, record. ARGV: zp, rp, fl. Reply: the record, nil when the key
-- does not exist (its entries are pruned).
local function tagsof(keys, args)
  if redis.call('EXISTS', keys[1]) == 0 then
    forget(keys[1], args[1], args[2], args[3])
    return false
  end
  return redis.call('GET', keys[2])
end

-- Sweep step over the entry set KEYS[1]: entries whose score (expiry) has
-- passed, then a scan step for keys deleted by hand; a dead key loses all its
-- entries, a live one gets its score refreshed. ARGV: zp, rp, fl, count,
-- scan cursor. Reply: {removed, checked, next cursor}.
local function tagsweep(keys, args)
  local z = keys[1]
  local zp, rp, fl = args[1], args[2], args[3]
  local n = tonumber(args[4])
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local removed, checked = 0, 0
  local this = string.sub(z, #zp + 1)
  local function check(m)
    checked = checked + 1
    if redis.call('EXISTS', m) == 1 then
      if lists(redis.call('GET', rp .. m), this) then
        redis.call('ZADD', z, expiry(m), m)
      else
        redis.call('ZREM', z, m)
        removed = removed + 1
      end
    else
      forget(m, zp, rp, fl)
      redis.call('ZREM', z, m)
      removed = removed + 1
    end
  end
  for _, m in ipairs(redis.call('ZRANGE', z, '-inf', now, 'BYSCORE', 'LIMIT', 0, n)) do
    check(m)
  end
  local cursor = args[5]
  if checked < n then
    local r = redis.call('ZSCAN', z, cursor, 'COUNT', n - checked)
    cursor = r[1]
    for i = 1, #r[2], 2 do check(r[2][i]) end
  end
  emptied(zp, fl, string.sub(z, #zp + 1))
  return {removed, checked, cursor}
end

-- After a TAGSET sent as MULTI with plain commands replaced a key's tags:
-- the key leaves the entry sets of the tags it lost, unless its record lists
-- them again by now (a later TAGSET). KEYS: key, record, the entry sets.
-- ARGV: zp, fl, the tags. Reply: entries removed.
local function tagdrop(keys, args)
  local rec = redis.call('GET', keys[2])
  local zp, fl, n = args[1], args[2], 0
  for i = 3, #args do
    if not rec or not lists(rec, args[i]) then
      n = n + redis.call('ZREM', zp .. args[i], keys[1])
      emptied(zp, fl, args[i])
    end
  end
  return n
end

-- KEYS: the slot's flag hash. ARGV: zp, then tag, token pairs: a pending
-- tag whose token still matches (same life of its entry set) is confirmed.
local function tagconfirm(keys, args)
  local zp = args[1]
  for i = 2, #args - 1, 2 do
    if redis.call('HGET', keys[1], args[i]) == args[i + 1]
      and redis.call('EXISTS', zp .. args[i]) == 1 then
      redis.call('HSET', keys[1], args[i], 'ok')
    end
  end
  return 'OK'
end

-- KEYS: the entry set of one tag in one slot. Reply: its size.
local function tagcard(keys, args)
  return redis.call('ZCARD', keys[1])
end

redis.register_function('respite_tagset', tagset)
redis.register_function('respite_tagadd', tagadd)
redis.register_function('respite_taginval', taginval)
redis.register_function('respite_tagkeys', tagkeys)
redis.register_function('respite_tagsof', tagsof)
redis.register_function('respite_tagsweep', tagsweep)
redis.register_function('respite_tagconfirm', tagconfirm)
redis.register_function('respite_tagcard', tagcard)
redis.register_function('respite_tagdrop', tagdrop)

-- KEYS: a tag's directory. ARGV: slot, generation read before the slot was
-- seen empty: the slot leaves the directory unless a TAGSET registered it
-- again since (which bumped the generation).
local function dirprune(keys, args)
  if redis.call('HGET', keys[1], args[1]) == args[2] then
    return redis.call('HDEL', keys[1], args[1])
  end
  return 0
end

redis.register_function('respite_tagdirprune', dirprune)
