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

# Queries. KEYS: filter sets (at least one). ARGV: prefix, order ('id' or 'recent'), limit, cursor ('' = start),
# intersect_max (intersect when the smallest set is at most this), walk_budget (candidates before giving up).
# Returns up to ``limit`` matching ids in order (by id after ``cursor``, or most recently updated first).
# Small filter sets are intersected (SINTER) and the result ordered. Large ones are met by walking the ordered
# index (ids lexicographically, or by update time) and testing membership, which stops as soon as the page is
# full; if ``walk_budget`` candidates yield less than a page, the intersection must be small, so the walk gives up and
# intersects after all. Either way a page never costs a sort of a large set or a scan of the whole catalog.
QUERY = """
local p, order, limit, cursor = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local intersect_max, walk_budget = tonumber(ARGV[5]), tonumber(ARGV[6])
-- order the sets smallest first: membership tests then fail as early as possible
local sets, size = {}, {}
for i = 1, #KEYS do sets[i] = KEYS[i]; size[KEYS[i]] = redis.call('SCARD', KEYS[i]) end
table.sort(sets, function(a, b) return size[a] < size[b] end)
local smallest = size[sets[1]]

local function intersect()
  local ids = {}
  for _, id in ipairs(redis.call('SINTER', unpack(KEYS))) do
    if order ~= 'id' or id > cursor then ids[#ids + 1] = id end
  end
  if order == 'id' then
    table.sort(ids)
  else
    local score = {}
    for _, id in ipairs(ids) do score[id] = tonumber(redis.call('ZSCORE', p .. ':updated', id)) or 0 end
    table.sort(ids, function(a, b) if score[a] ~= score[b] then return score[a] > score[b] end return a < b end)
  end
  local out = {}
  for i = 1, math.min(limit, #ids) do out[i] = ids[i] end
  return out
end

if smallest <= intersect_max then return intersect() end

local out, visited, start, chunk, from = {}, 0, 0, math.min(512, walk_budget), cursor
while #out < limit do
  local batch
  if order == 'id' then
    local lo = '-'
    if from ~= '' then lo = '(' .. from end
    batch = redis.call('ZRANGEBYLEX', p .. ':all', lo, '+', 'LIMIT', 0, chunk)
    if #batch > 0 then from = batch[#batch] end
  else
    batch = redis.call('ZREVRANGE', p .. ':updated', start, start + chunk - 1)
    start = start + chunk
  end
  if #batch == 0 then break end
  for _, id in ipairs(batch) do
    local ok = true
    for i = 1, #sets do
      if redis.call('SISMEMBER', sets[i], id) == 0 then ok = false; break end
    end
    if ok then
      out[#out + 1] = id
      if #out == limit then return out end
    end
  end
  visited = visited + #batch
  if visited >= walk_budget then return intersect() end
end
return out
"""

# Lineage walk. ARGV: prefix, root, direction ('upstream'|'downstream'|'both'), depth, max nodes.
# Returns {node JSON..., edge JSON...} as two arrays (nodes sorted by id), breadth-first, at most ``max nodes``
# nodes; or -1 when the root does not exist. One round trip for the whole answer.
LINEAGE = """
local p, root, direction, depth, cap = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
if redis.call('EXISTS', p .. ':asset:' .. root) == 0 then return -1 end
local function mget(keys)
  -- in chunks: unpack() of thousands of values would overflow Lua's stack
  local out = {}
  for lo = 1, #keys, 1000 do
    for _, d in ipairs(redis.call('MGET', unpack(keys, lo, math.min(#keys, lo + 999)))) do
      if d then out[#out + 1] = d end
    end
  end
  return out
end
local function answer(nodes, edges)
  table.sort(nodes)
  local keys = {}
  for i, id in ipairs(nodes) do keys[i] = p .. ':asset:' .. id end
  return {mget(keys), mget(edges)}
end
local seen, nodes, edges, edge_seen = {[root] = true}, {root}, {}, {}
local frontier = {root}
for _ = 1, depth do
  local nxt = {}
  for _, node in ipairs(frontier) do
    for _, way in ipairs({'up', 'down'}) do
      local wanted = direction == 'both' or (way == 'up' and direction == 'upstream')
      wanted = wanted or (way == 'down' and direction == 'downstream')
      if wanted then
        for _, m in ipairs(redis.call('SMEMBERS', p .. ':' .. way .. ':' .. node)) do
          local rel, other = string.match(m, '^([^|]*)|(.*)$')
          local key
          if way == 'up' then key = p .. ':edge:' .. other .. '|' .. rel .. '|' .. node
          else key = p .. ':edge:' .. node .. '|' .. rel .. '|' .. other end
          if not seen[other] and #nodes >= cap then return answer(nodes, edges) end
          if not edge_seen[key] then edge_seen[key] = true; edges[#edges + 1] = key end
          if not seen[other] then
            seen[other] = true
            nodes[#nodes + 1] = other
            nxt[#nxt + 1] = other
          end
        end
      end
    end
  end
  frontier = nxt
  if #frontier == 0 then break end
end
return answer(nodes, edges)
"""
