"""Lua scripts of the catalog store. Each keeps an asset, its indexes and its lineage consistent in one step.

Index keys depend on the asset's previous values, which only the script can read atomically, so the scripts
build key names from ``prefix`` (ARGV[1]) like ``CatalogKeys`` does; they run on a single Redis server
(not Redis Cluster, where every key must be declared).
"""

# Shared helpers: (un)index an id under kind/value, tracking which values exist per kind for stats.
_HELPERS = """
local p = ARGV[1]
local id = ARGV[2]
local function idx(kind, v) return p .. ':idx:' .. kind .. ':' .. v end
local function index(kind, v)
  redis.call('SADD', idx(kind, v), id)
  redis.call('SADD', p .. ':vals:' .. kind, v)
end
local function unindex(kind, v)
  local k = idx(kind, v)
  redis.call('SREM', k, id)
  if redis.call('SCARD', k) == 0 then redis.call('SREM', p .. ':vals:' .. kind, v) end
end
local function unindex_all(m)
  unindex('type', m.type); unindex('owner', m.owner); unindex('namespace', m.namespace); unindex('health', m.health)
  for _, t in ipairs(cjson.decode(m.tags)) do unindex('tag', t) end
  for _, t in ipairs(cjson.decode(m.words)) do unindex('word', t) end
end
local function meta_of(key)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then return nil end
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
local function emit(event)
  redis.call('XADD', p .. ':events', 'MAXLEN', '~', 10000, '*', 'data', event)
  redis.call('PUBLISH', p .. ':changes', event)
end
"""

# ARGV: prefix, id, asset JSON, type, owner, namespace, health, tags JSON, words JSON, updated_at, digest, event.
# Returns 'created', 'updated' or 'unchanged' (same digest: nothing written, no event).
UPSERT = (
    _HELPERS
    + """
local metakey = p .. ':meta:' .. id
local old = meta_of(metakey)
if old and old.digest == ARGV[11] then return 'unchanged' end
if old then unindex_all(old) end
index('type', ARGV[4]); index('owner', ARGV[5]); index('namespace', ARGV[6]); index('health', ARGV[7])
for _, t in ipairs(cjson.decode(ARGV[8])) do index('tag', t) end
for _, t in ipairs(cjson.decode(ARGV[9])) do index('word', t) end
redis.call('HSET', metakey, 'type', ARGV[4], 'owner', ARGV[5], 'namespace', ARGV[6], 'health', ARGV[7],
           'tags', ARGV[8], 'words', ARGV[9], 'digest', ARGV[11])
redis.call('SET', p .. ':asset:' .. id, ARGV[3])
redis.call('ZADD', p .. ':all', 0, id)
redis.call('ZADD', p .. ':updated', ARGV[10], id)
emit(ARGV[12])
if old then return 'updated' end
return 'created'
"""
)

# ARGV: prefix, id, event. Removes the asset, its index entries and every lineage edge touching it.
# Returns the number of edges removed, or -1 when the asset does not exist.
DELETE = (
    _HELPERS
    + """
local metakey = p .. ':meta:' .. id
local old = meta_of(metakey)
if not old then return -1 end
unindex_all(old)
local removed = 0
for _, m in ipairs(redis.call('SMEMBERS', p .. ':down:' .. id)) do
  local rel, other = string.match(m, '^([^|]*)|(.*)$')
  redis.call('SREM', p .. ':up:' .. other, rel .. '|' .. id)
  redis.call('DEL', p .. ':edge:' .. id .. '|' .. rel .. '|' .. other)
  removed = removed + 1
end
for _, m in ipairs(redis.call('SMEMBERS', p .. ':up:' .. id)) do
  local rel, other = string.match(m, '^([^|]*)|(.*)$')
  if other ~= id then
    redis.call('SREM', p .. ':down:' .. other, rel .. '|' .. id)
    redis.call('DEL', p .. ':edge:' .. other .. '|' .. rel .. '|' .. id)
    removed = removed + 1
  end
end
redis.call('DEL', p .. ':down:' .. id, p .. ':up:' .. id, metakey, p .. ':asset:' .. id)
redis.call('ZREM', p .. ':all', id)
redis.call('ZREM', p .. ':updated', id)
redis.call('DECRBY', p .. ':edges', removed)
emit(ARGV[3])
return removed
"""
)

# ARGV: prefix, upstream, downstream, relation, edge JSON, event.
# Returns 1 when added, 0 when it existed (provenance refreshed), -1/-2 when upstream/downstream is missing.
LINK = (
    _HELPERS
    + """
local down = ARGV[3]
local rel = ARGV[4]
if redis.call('EXISTS', p .. ':asset:' .. id) == 0 then return -1 end
if redis.call('EXISTS', p .. ':asset:' .. down) == 0 then return -2 end
redis.call('SET', p .. ':edge:' .. id .. '|' .. rel .. '|' .. down, ARGV[5])
local added = redis.call('SADD', p .. ':down:' .. id, rel .. '|' .. down)
redis.call('SADD', p .. ':up:' .. down, rel .. '|' .. id)
if added == 1 then
  redis.call('INCR', p .. ':edges')
  emit(ARGV[6])
end
return added
"""
)

# ARGV: prefix, upstream, downstream, relation, event. Returns 1 when removed, 0 when there was no such edge.
UNLINK = (
    _HELPERS
    + """
local down = ARGV[3]
local rel = ARGV[4]
local removed = redis.call('SREM', p .. ':down:' .. id, rel .. '|' .. down)
redis.call('SREM', p .. ':up:' .. down, rel .. '|' .. id)
redis.call('DEL', p .. ':edge:' .. id .. '|' .. rel .. '|' .. down)
if removed == 1 then
  redis.call('DECR', p .. ':edges')
  emit(ARGV[5])
end
return removed
"""
)
