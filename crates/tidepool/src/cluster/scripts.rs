//! What the cluster keeps in Redis and the Lua scripts that change it atomically. Every key
//! shares the hash tag `{prefix}` (one slot, so the scripts also run on a Redis Cluster). Time is
//! Redis's own (`TIME`), so the nodes' clocks do not matter.
//!
//! - `{p}:nodes` sorted set: node id → expiry (ms); `{p}:addrs` hash: node id → advertise_addr.
//! - `{p}:budget:<pool>` sorted set: one member `<node>:<n>` per open upstream connection →
//!   expiry (ms). Taken by [`ACQUIRE`] only while the set (expired members removed) is below the
//!   pool's limit; renewed in bulk by [`RENEW`]; removed when the connection closes.
//! - `{p}:epoch`: exists while Redis has kept the cluster's state. Missing (a restarted Redis
//!   without persistence, a flush) → it is set again together with `{p}:settle`, which lives two
//!   heartbeats: until it expires no lease is granted, so every node re-adds the leases it holds
//!   before anyone can count the set as free.

/// KEYS: budget, epoch, settle. ARGV: limit, member, ttl_ms, settle_ms.
/// Returns 1 granted, 0 full, -1 settling (state being rebuilt).
pub const ACQUIRE: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('SET', KEYS[2], '1')
  redis.call('SET', KEYS[3], '1', 'PX', ARGV[4])
  return -1
end
if redis.call('EXISTS', KEYS[3]) == 1 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: budget. ARGV: ttl_ms, member… Re-adds (or extends) the members, drops expired ones,
/// returns the number of live leases.
pub const RENEW: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"#;

/// KEYS: nodes, addrs, epoch, settle. ARGV: node id, ttl_ms, advertise_addr, settle_ms.
/// Returns {settling (0/1), id1, addr1, id2, addr2, …} of the live nodes.
pub const HEARTBEAT: &str = r#"
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], '1')
  redis.call('SET', KEYS[4], '1', 'PX', ARGV[4])
end
local settling = redis.call('EXISTS', KEYS[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)) do
  redis.call('HDEL', KEYS[2], n)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local out = {settling}
for _, n in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  table.insert(out, n)
  table.insert(out, redis.call('HGET', KEYS[2], n) or '')
end
return out
"#;

/// KEYS: nodes, addrs, budget… ARGV: node id. A graceful leave: removes the node's membership
/// and every lease of it (members `<node>:<n>`; node ids hold no `:`) from the given budgets.
/// Returns the number of leases removed.
pub const LEAVE: &str = r#"
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
local prefix = ARGV[1] .. ':'
local removed = 0
for i = 3, #KEYS do
  for _, m in ipairs(redis.call('ZRANGE', KEYS[i], 0, -1)) do
    if string.sub(m, 1, #prefix) == prefix then
      redis.call('ZREM', KEYS[i], m)
      removed = removed + 1
    end
  end
end
return removed
"#;

/// The key names of one cluster (`key_prefix`).
#[derive(Debug, Clone)]
pub struct Keys {
    tag: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Self {
        Keys { tag: format!("{{{prefix}}}") }
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.tag)
    }
    pub fn addrs(&self) -> String {
        format!("{}:addrs", self.tag)
    }
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.tag)
    }
    pub fn settle(&self) -> String {
        format!("{}:settle", self.tag)
    }
    pub fn budget(&self, pool: &str) -> String {
        format!("{}:budget:{pool}", self.tag)
    }
    /// The pub/sub channel of node-to-node messages.
    pub fn bus(&self) -> String {
        format!("{}:bus", self.tag)
    }
}
