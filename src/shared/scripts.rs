//! The Lua scripts, one atomic call each, and their typed wrappers. Every deadline is taken on
//! Redis's clock (`TIME`), every key of one logical item shares a hash tag, and every script
//! uses only commands Redis 6.2 and Valkey have (`SET NX PX`, `HSET` with pairs, `PUBLISH`).
//!
//! Lua numbers are doubles: times are written with `%.0f` (exact up to 2^53 µs, the year 2255).

use redis::{Script, ScriptInvocation, Value};

use super::crypto::{hex, unhex};
use super::{Kind, Store};

/// The answer of one GCRA check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gcra {
    /// Admitted; `remaining` more could pass now, the quota is whole again in `reset_us`.
    Allowed { remaining: u32, reset_us: u64 },
    /// Refused; the next request would pass in `wait_us`.
    Denied { wait_us: u64 },
}

/// A revocation the fleet recorded (`Store::revoke`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationEntry {
    /// When it was last recorded, on Redis's clock (ms): later entries of a user supersede it.
    pub at_ms: u64,
    /// Tokens issued before this (Unix ms) are covered; `None`: every token.
    pub not_before_ms: Option<u64>,
    pub uid: String,
}

/// What a replica about to deliver a security event finds in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetClaim {
    /// This replica delivers it.
    Mine,
    /// The RP took it already (through some replica).
    Delivered,
    /// Another replica is delivering it; its claim lapses in `ttl_ms`.
    Elsewhere { ttl_ms: u64 },
}

/// What a replica about to refresh finds in Redis.
#[derive(Debug)]
pub enum RefreshClaim {
    /// A new token another replica obtained: sealed, expiring in `expires_in_ms`, reusable for
    /// `reuse_ms` more (both on Redis's clock).
    Grant {
        sealed: Vec<u8>,
        expires_in_ms: i64,
        reuse_ms: i64,
    },
    /// The OAuth server rejected this refresh token a moment ago.
    Reauth,
    /// This replica holds the lease: it makes the one token call.
    Lead,
    /// Another replica holds the lease for `ttl_ms` more.
    Wait { ttl_ms: i64 },
}

pub(super) struct Scripts {
    gcra: Script,
    window: Script,
    table: Script,
    claim_probe: Script,
    ramp_take: Script,
    refresh_claim: Script,
    refresh_grant: Script,
    refresh_reauth: Script,
    release: Script,
    first_use: Script,
    revoke: Script,
    revocations: Script,
    set_claim: Script,
}

const NOW_MS: &str = "local t = redis.call('TIME')\n\
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n";

impl Scripts {
    pub(super) fn new() -> Scripts {
        Scripts {
            // KEYS: the quota's TAT. ARGV: emission interval (µs), burst.
            gcra: Script::new(
                r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local limit = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local diff = new_tat - now
if diff > limit then
  return {0, 0, math.floor(diff - limit)}
end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil(diff / 1000) + 1)
return {1, math.floor((limit - diff) / interval), math.floor(diff)}
"#,
            ),
            // KEYS: the window table, the scope's probe lease. ARGV: field, event, length (ms),
            // status, errno, origin, channel.
            window: Script::new(&format!(
                "{NOW_MS}{}",
                r#"
local field, event = ARGV[1], ARGV[2]
local at = now
if event == 'block' then
  at = now + tonumber(ARGV[3])
  local cur = redis.call('HGET', KEYS[1], field)
  if cur then
    local ev, until_ms = string.match(cur, '^(%a+) (%d+)')
    if ev == 'block' and tonumber(until_ms) >= at then return 0 end
  end
  redis.call('HSET', KEYS[1], field, 'block ' .. string.format('%.0f', at) .. ' ' .. ARGV[4] .. ' ' .. ARGV[5])
  redis.call('DEL', KEYS[2])
elseif event == 'ramp' then
  redis.call('HSET', KEYS[1], field, 'ramp ' .. string.format('%.0f', now) .. ' 0 0')
  redis.call('DEL', KEYS[2])
elseif event == 'close' then
  redis.call('HDEL', KEYS[1], field)
  redis.call('DEL', KEYS[2])
elseif event == 'release' then
  if redis.call('GET', KEYS[2]) ~= ARGV[6] then return 0 end
  redis.call('DEL', KEYS[2])
end
redis.call('PUBLISH', ARGV[7], ARGV[6] .. ' ' .. field .. ' ' .. event .. ' ' .. string.format('%.0f', at) .. ' ' .. ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. string.format('%.0f', now))
return 1
"#
            )),
            // KEYS: the window table. ARGV: how long past its time an entry is kept (ms).
            // Returns the live entries as "- field event at status errno", then Redis's now.
            table: Script::new(&format!(
                "{NOW_MS}{}",
                r#"
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local at = string.match(all[i + 1], '^%a+ (%d+)')
  if at and tonumber(at) + tonumber(ARGV[1]) > now then
    table.insert(live, '- ' .. all[i] .. ' ' .. all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
table.insert(live, string.format('%.0f', now))
return live
"#
            )),
            // KEYS: the probe lease. ARGV: origin, lease (ms). -1: ours; else its TTL.
            claim_probe: Script::new(
                r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return 0 end
return ttl
"#,
            ),
            // KEYS: this ramp second's counter. ARGV: the fleet's rate for it.
            ramp_take: Script::new(
                r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], 3000) end
if n > tonumber(ARGV[1]) then return 0 end
return 1
"#,
            ),
            // KEYS: grant, reauth mark, lease. ARGV: lease (ms), skip the grant ('1'), origin.
            refresh_claim: Script::new(&format!(
                "{NOW_MS}{}",
                r#"
if ARGV[2] ~= '1' then
  local g = redis.call('HMGET', KEYS[1], 'ct', 'exp')
  if g[1] then
    return {'grant', g[1], tonumber(g[2]) - now, redis.call('PTTL', KEYS[1])}
  end
end
if redis.call('EXISTS', KEYS[2]) == 1 then return {'reauth'} end
if redis.call('SET', KEYS[3], ARGV[3], 'NX', 'PX', ARGV[1]) then return {'lead'} end
return {'wait', redis.call('PTTL', KEYS[3])}
"#
            )),
            // KEYS: grant, reauth mark, lease. ARGV: sealed token, expires in (ms), reuse (ms),
            // origin.
            refresh_grant: Script::new(&format!(
                "{NOW_MS}{}",
                r#"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('HSET', KEYS[1], 'ct', ARGV[1], 'exp', string.format('%.0f', now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if redis.call('GET', KEYS[3]) == ARGV[4] then redis.call('DEL', KEYS[3]) end
return 1
"#
            )),
            // KEYS: grant, reauth mark, lease. ARGV: how long the mark stays (ms), origin.
            refresh_reauth: Script::new(
                r#"
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
"#,
            ),
            // KEYS: a lease. ARGV: origin. Deletes it only if this replica holds it.
            release: Script::new(
                r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#,
            ),
            // KEYS: the (issuer, jti) mark. ARGV: until when it counts (Unix seconds).
            first_use: Script::new(
                r#"
local t = redis.call('TIME')
local ttl = (tonumber(ARGV[1]) - tonumber(t[1])) * 1000
if ttl < 1000 then ttl = 1000 end
if redis.call('SET', KEYS[1], '1', 'NX', 'PX', string.format('%.0f', ttl)) then return 1 end
return 0
"#,
            ),
            // KEYS: the revocation table. ARGV: field (the uid's keyed hash), not before (ms, or
            // '-': every token), the sealed uid (hex), origin, channel, remember (ms). Widens
            // a live entry of the same user, stamps it with Redis's clock and publishes it.
            revoke: Script::new(&format!(
                "{NOW_MS}{}",
                r#"
local nb = ARGV[2]
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local at, old = string.match(cur, '^(%d+) (%S+)')
  if at and tonumber(at) + tonumber(ARGV[6]) > now then
    if old == '-' then nb = '-'
    elseif nb ~= '-' and tonumber(old) > tonumber(nb) then nb = old end
  end
end
local entry = string.format('%.0f', now) .. ' ' .. nb .. ' ' .. ARGV[3]
redis.call('HSET', KEYS[1], ARGV[1], entry)
redis.call('PEXPIRE', KEYS[1], ARGV[6])
redis.call('PUBLISH', ARGV[5], ARGV[4] .. ' ' .. ARGV[1] .. ' ' .. entry)
return now
"#
            )),
            // KEYS: the revocation table. ARGV: remember (ms). The live entries as
            // "field at not_before sealed"; older ones are dropped.
            revocations: Script::new(&format!(
                "{NOW_MS}{}",
                r#"
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
  local at = string.match(all[i + 1], '^(%d+) ')
  if at and tonumber(at) + tonumber(ARGV[1]) > now then
    table.insert(live, all[i] .. ' ' .. all[i + 1])
  else
    redis.call('HDEL', KEYS[1], all[i])
  end
end
return live
"#
            )),
            // KEYS: a SET's jti mark. ARGV: origin, pending claim (ms). -2: delivered; -1:
            // claimed by this replica; else another replica's claim, with its TTL (ms).
            set_claim: Script::new(
                r#"
if redis.call('GET', KEYS[1]) == 'done' then return -2 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return -1 end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then return 0 end
return ttl
"#,
            ),
        }
    }
}

// === impl Store: scripts ===

impl Store {
    /// One GCRA check of `key` (a full key name): `burst` requests, one more every
    /// `interval_us`.
    pub async fn gcra(&self, kind: Kind, key: &str, interval_us: u64, burst: u32) -> Option<Gcra> {
        let script = &self.scripts.gcra;
        let (allowed, remaining, us): (i64, i64, i64) = self
            .run(kind, |mut c| async move {
                script
                    .key(key)
                    .arg(interval_us)
                    .arg(burst)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let us = u64::try_from(us).unwrap_or(0);
        Some(if allowed == 1 {
            Gcra::Allowed {
                remaining: u32::try_from(remaining).unwrap_or(0),
                reset_us: us,
            }
        } else {
            Gcra::Denied { wait_us: us }
        })
    }

    /// Publishes a back-off table change (`block`, `ramp`, `close`, `release`) to every
    /// replica and records it in the table. `length_ms` only for `block`.
    pub async fn window_event(
        &self,
        field: &str,
        event: &str,
        length_ms: u64,
        status: u16,
        errno: u16,
    ) -> Option<()> {
        let script = &self.scripts.window;
        let (table, lease, channel) = (self.table_key(), self.lease_key(field), self.channel());
        let _: i64 = self
            .run(Kind::Backoff, |mut c| async move {
                script
                    .key(table)
                    .key(lease)
                    .arg(field)
                    .arg(event)
                    .arg(length_ms)
                    .arg(status)
                    .arg(errno)
                    .arg(&self.origin)
                    .arg(channel)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(())
    }

    /// The live back-off table entries and Redis's clock (ms), dropping entries `keep_ms` past
    /// their time.
    pub(super) async fn table_snapshot(&self, keep_ms: u64) -> Option<(Vec<String>, u64)> {
        let script = &self.scripts.table;
        let table = self.table_key();
        let mut rows: Vec<String> = self
            .run(Kind::Backoff, |mut c| async move {
                script.key(table).arg(keep_ms).invoke_async(&mut c).await
            })
            .await?;
        let now = rows.pop()?.parse().ok()?;
        Some((rows, now))
    }

    /// Takes the fleet's one probe lease of a back-off scope. `Some(None)`: ours; `Some(ttl)`:
    /// another replica holds it that long (ms).
    pub async fn claim_probe(&self, field: &str, lease_ms: u64) -> Option<Option<u64>> {
        let script = &self.scripts.claim_probe;
        let key = self.lease_key(field);
        let ttl: i64 = self
            .run(Kind::Backoff, |mut c| async move {
                script
                    .key(key)
                    .arg(&self.origin)
                    .arg(lease_ms.max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(u64::try_from(ttl).ok())
    }

    /// Counts one request against a ramp second shared by the fleet: whether it fits `rate`.
    pub async fn ramp_take(&self, field: &str, second: u64, rate: u32) -> Option<bool> {
        let script = &self.scripts.ramp_take;
        let key = self.key("bo", &format!("ramp:{field}:{second}"));
        let fits: i64 = self
            .run(Kind::Backoff, |mut c| async move {
                script.key(key).arg(rate).invoke_async(&mut c).await
            })
            .await?;
        Some(fits == 1)
    }

    /// Claims the refresh of the refresh token whose keyed hash is `rt`, or finds its result.
    pub async fn refresh_claim(
        &self,
        rt: &str,
        lease_ms: u64,
        skip_grant: bool,
    ) -> Option<RefreshClaim> {
        let skip = if skip_grant { "1" } else { "0" };
        let reply: Vec<Value> = self
            .refresh_script(&self.scripts.refresh_claim, rt, |call| {
                call.arg(lease_ms.max(1)).arg(skip);
            })
            .await?;
        parse_claim(&reply)
    }

    /// Leaves the new token (sealed) for the other replicas and gives up the lease.
    pub async fn refresh_grant(
        &self,
        rt: &str,
        sealed: &[u8],
        expires_in_ms: u64,
        reuse_ms: u64,
    ) -> Option<()> {
        let _: i64 = self
            .refresh_script(&self.scripts.refresh_grant, rt, |call| {
                call.arg(sealed).arg(expires_in_ms).arg(reuse_ms.max(1));
            })
            .await?;
        Some(())
    }

    /// Tells the fleet the refresh token is dead (for `ttl_ms`) and gives up the lease.
    pub async fn refresh_reauth(&self, rt: &str, ttl_ms: u64) -> Option<()> {
        let _: i64 = self
            .refresh_script(&self.scripts.refresh_reauth, rt, |call| {
                call.arg(ttl_ms.max(1));
            })
            .await?;
        Some(())
    }

    /// Runs a refresh script on `rt`'s keys (grant, re-auth answer, lease): its own arguments
    /// from `args`, then this replica's origin, which every refresh script takes last.
    async fn refresh_script<T: redis::FromRedisValue>(
        &self,
        script: &Script,
        rt: &str,
        args: impl FnOnce(&mut ScriptInvocation<'_>),
    ) -> Option<T> {
        let mut call = script.prepare_invoke();
        for key in self.refresh_keys(rt) {
            call.key(key);
        }
        args(&mut call);
        call.arg(&self.origin);
        self.run(Kind::Refresh, |mut c| async move {
            call.invoke_async(&mut c).await
        })
        .await
    }

    /// Gives up a refresh lease without a result (the call failed): the next replica may try.
    pub async fn refresh_release(&self, rt: &str) -> Option<()> {
        let [_, _, lease] = self.refresh_keys(rt);
        self.release_key(Kind::Refresh, lease).await
    }

    /// Gives up a back-off probe lease this replica holds.
    pub async fn release_probe(&self, field: &str) -> Option<()> {
        let lease = self.lease_key(field);
        self.release_key(Kind::Backoff, lease).await
    }

    /// Records an AMO (issuer, jti) whose keyed hash is `id` until `until` (Unix seconds, on
    /// Redis's clock). `Some(false)`: already recorded (a replay).
    pub async fn first_use(&self, id: &str, until: i64) -> Option<bool> {
        let script = &self.scripts.first_use;
        let key = self.key(&format!("amo:{id}"), "");
        let first: i64 = self
            .run(Kind::AmoReplay, |mut c| async move {
                script.key(key).arg(until).invoke_async(&mut c).await
            })
            .await?;
        Some(first == 1)
    }

    /// Records a security-event revocation of `uid` for the fleet (widening one already
    /// there) and publishes it. `not_before_ms`: tokens issued before it (Unix ms); `None`:
    /// every token. Only the uid's keyed hash names it; the uid itself is sealed. Redis's
    /// time of the entry.
    pub async fn revoke(
        &self,
        uid: &str,
        not_before_ms: Option<u64>,
        remember_ms: u64,
    ) -> Option<u64> {
        let script = &self.scripts.revoke;
        let field = self.hash("revocation-uid", uid.as_bytes());
        let sealed = hex(&self.seal(field.as_bytes(), uid.as_bytes())?);
        let not_before = not_before_ms.map_or_else(|| "-".to_owned(), |ms| ms.to_string());
        let (table, channel) = (self.revocation_table(), self.revocation_channel());
        let at: i64 = self
            .run(Kind::Revocations, |mut c| async move {
                script
                    .key(table)
                    .arg(&field)
                    .arg(not_before)
                    .arg(sealed)
                    .arg(&self.origin)
                    .arg(channel)
                    .arg(remember_ms.max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        u64::try_from(at).ok()
    }

    /// Every revocation recorded within `remember_ms`, opened.
    pub async fn revocations(&self, remember_ms: u64) -> Option<Vec<RevocationEntry>> {
        let script = &self.scripts.revocations;
        let table = self.revocation_table();
        let rows: Vec<String> = self
            .run(Kind::Revocations, |mut c| async move {
                script
                    .key(table)
                    .arg(remember_ms.max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(
            rows.iter()
                .filter_map(|r| self.read_revocation(r))
                .collect(),
        )
    }

    /// `field at not_before sealed` as stored and published; `None` when it does not open
    /// (another fleet's key, or garbage).
    pub(super) fn read_revocation(&self, entry: &str) -> Option<RevocationEntry> {
        let mut parts = entry.split(' ');
        let (field, at, not_before, sealed) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let not_before_ms = match not_before {
            "-" => None,
            ms => Some(ms.parse().ok()?),
        };
        let uid = self.open(field.as_bytes(), &unhex(sealed)?)?;
        let uid = String::from_utf8(uid).ok()?;
        let at_ms = at.parse().ok()?;
        (self.hash("revocation-uid", uid.as_bytes()) == field).then_some(RevocationEntry {
            at_ms,
            not_before_ms,
            uid,
        })
    }

    /// Claims the delivery of a security event whose `jti` mark is `id` (a keyed hash) for
    /// `pending_ms`.
    pub async fn set_claim(&self, id: &str, pending_ms: u64) -> Option<SetClaim> {
        let script = &self.scripts.set_claim;
        let key = self.set_key(id);
        let reply: i64 = self
            .run(Kind::SetLedger, |mut c| async move {
                script
                    .key(key)
                    .arg(&self.origin)
                    .arg(pending_ms.max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(match reply {
            -2 => SetClaim::Delivered,
            -1 => SetClaim::Mine,
            ttl => SetClaim::Elsewhere {
                ttl_ms: u64::try_from(ttl).unwrap_or(0),
            },
        })
    }

    /// The RP took the event: the `jti` is delivered for the fleet for `keep_ms`.
    pub async fn set_delivered(&self, id: &str, keep_ms: u64) -> Option<()> {
        let key = self.set_key(id);
        let _: () = self
            .run(Kind::SetLedger, |mut c| async move {
                redis::cmd("SET")
                    .arg(key)
                    .arg("done")
                    .arg("PX")
                    .arg(keep_ms.max(1))
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Some(())
    }

    /// The delivery failed: gives up this replica's claim so FxA's retry gets through.
    pub async fn set_release(&self, id: &str) -> Option<()> {
        let key = self.set_key(id);
        self.release_key(Kind::SetLedger, key).await
    }

    async fn release_key(&self, kind: Kind, key: String) -> Option<()> {
        let script = &self.scripts.release;
        let _: i64 = self
            .run(kind, |mut c| async move {
                script.key(key).arg(&self.origin).invoke_async(&mut c).await
            })
            .await?;
        Some(())
    }

    pub(super) fn channel(&self) -> String {
        self.key("bo", "events")
    }

    pub(super) fn revocation_channel(&self) -> String {
        self.key("rv", "events")
    }

    fn revocation_table(&self) -> String {
        self.key("rv", "users")
    }

    fn set_key(&self, id: &str) -> String {
        self.key(&format!("set:{id}"), "")
    }

    fn table_key(&self) -> String {
        self.key("bo", "windows")
    }

    fn lease_key(&self, field: &str) -> String {
        self.key("bo", &format!("probe:{field}"))
    }

    fn refresh_keys(&self, rt: &str) -> [String; 3] {
        let tag = format!("rf:{rt}");
        [
            self.key(&tag, "grant"),
            self.key(&tag, "reauth"),
            self.key(&tag, "lease"),
        ]
    }
}

fn parse_claim(reply: &[Value]) -> Option<RefreshClaim> {
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let word = match reply.first()? {
        Value::BulkString(b) => b.as_slice(),
        Value::SimpleString(s) => s.as_bytes(),
        _ => return None,
    };
    Some(match word {
        b"grant" => {
            let Some(Value::BulkString(sealed)) = reply.get(1) else {
                return None;
            };
            RefreshClaim::Grant {
                sealed: sealed.clone(),
                expires_in_ms: int(reply.get(2))?,
                reuse_ms: int(reply.get(3))?,
            }
        }
        b"reauth" => RefreshClaim::Reauth,
        b"lead" => RefreshClaim::Lead,
        b"wait" => RefreshClaim::Wait {
            ttl_ms: int(reply.get(1))?,
        },
        _ => return None,
    })
}
