//! `[redis]`: the store replicas share state through. `redis://` only to loopback (as plain
//! `http://` upstreams), `rediss://` anywhere; the password, the hashing key and the
//! encryption key are secrets (never inline); timeouts are short and non-zero.

use http::Uri;

use super::Context;
use crate::config::Problems;
use crate::config::model::{DownPolicy, OnRedisDown, RedisSettings, Secret};
use crate::config::net::is_loopback_host;
use crate::config::raw::{RawOnRedisDown, RawRedis};
use crate::config::secret::{read_file, resolve_path};

/// Shortest key material accepted for the hashing and encryption keys (256 bits).
const MIN_KEY_BYTES: usize = 32;
/// Redis keys stay short: the prefix is a namespace, not data.
const MAX_PREFIX_LEN: usize = 64;

pub fn settings(raw: &RawRedis, ctx: &Context<'_>, p: &mut Problems) -> Option<RedisSettings> {
    let address = raw
        .url
        .as_deref()
        .and_then(|url| parse_url(url).map_err(|e| p.at("redis.url", e)).ok());
    let tls = address.as_ref().is_some_and(|a| a.tls);
    let ca_pem = raw.ca_file.as_ref().and_then(|file| {
        if address.is_some() && !tls {
            p.at("redis.ca_file", "ca_file is only used with a rediss:// URL");
        }
        read_file(&resolve_path(ctx.base_dir, file))
            .and_then(|pem| super::listeners::check_certificates(&pem).map(|()| pem))
            .map_err(|e| p.at("redis.ca_file", e))
            .ok()
    });
    let password = raw.password.as_ref().and_then(|r| {
        let secret = secret(Some(r), "redis.password", ctx, p)?;
        if std::str::from_utf8(secret.expose()).is_err() {
            p.at("redis.password", "must be UTF-8 text");
            return None;
        }
        Some(secret)
    });
    if let Some(user) = &raw.username
        && (user.is_empty() || !user.bytes().all(|b| b.is_ascii_graphic()))
    {
        p.at(
            "redis.username",
            "must be 1 or more printable ASCII characters",
        );
    }
    let prefix_ok = !raw.key_prefix.is_empty()
        && raw.key_prefix.len() <= MAX_PREFIX_LEN
        && raw
            .key_prefix
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'{' | b'}'));
    if !prefix_ok {
        p.at(
            "redis.key_prefix",
            "must be 1-64 printable ASCII characters without { or } (they mark hash tags)",
        );
    }
    let connect_timeout = super::nonzero(raw.connect_timeout, "redis.connect_timeout", p);
    let command_timeout = super::nonzero(raw.command_timeout, "redis.command_timeout", p);
    let health_interval = super::nonzero(raw.health_interval, "redis.health_interval", p);
    let hashing_key = key_material(raw.hashing_key.as_ref(), "redis.hashing_key", ctx, p);
    let encryption_key = key_material(raw.encryption_key.as_ref(), "redis.encryption_key", ctx, p);
    if let (Some(h), Some(e)) = (&hashing_key, &encryption_key)
        && h.expose() == e.expose()
    {
        p.at(
            "redis.encryption_key",
            "must differ from redis.hashing_key (one key, one purpose)",
        );
    }
    let on_down = on_down(&raw.on_redis_down, p);
    let address = address?;
    Some(RedisSettings {
        host: address.host,
        port: address.port,
        db: address.db,
        tls,
        ca_pem,
        username: raw.username.clone(),
        password,
        key_prefix: raw.key_prefix.clone(),
        connect_timeout,
        command_timeout,
        health_interval,
        hashing_key: hashing_key?,
        encryption_key: encryption_key?,
        on_down,
    })
}

struct Address {
    host: String,
    port: u16,
    db: i64,
    tls: bool,
}

/// `redis://host[:port][/db]` (host on loopback) or `rediss://host[:port][/db]`.
fn parse_url(s: &str) -> Result<Address, String> {
    // Checked first, and without echoing the URL: what precedes the `@` may be a password.
    if s.contains('@') {
        return Err(
            "credentials in the URL are not allowed; use redis.username and redis.password"
                .to_owned(),
        );
    }
    if s.contains('#') || s.contains('?') {
        return Err(format!(
            "{s:?}: a Redis URL has no query or fragment; use the [redis] keys"
        ));
    }
    let uri: Uri = s.parse().map_err(|e| {
        format!("{s:?} is not a valid URL ({e}); expected redis://host[:port][/db]")
    })?;
    let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
        return Err(format!(
            "{s:?} must be an absolute URL such as rediss://host[:port][/db]"
        ));
    };
    let host = authority.host();
    if host.is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    let tls = match scheme {
        "rediss" => true,
        "redis" if is_loopback_host(host) => false,
        "redis" => {
            return Err(format!(
                "{s:?}: plain redis:// is only allowed to loopback (localhost, 127.0.0.0/8, ::1); \
                 use rediss://"
            ));
        }
        _ => {
            return Err(format!(
                "{s:?}: scheme must be rediss (or redis on loopback)"
            ));
        }
    };
    let port = match authority.port() {
        None => 6379,
        Some(_) => authority
            .port_u16()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{s:?}: the port must be 1-65535"))?,
    };
    let db = match uri.path().trim_start_matches('/') {
        "" => 0,
        n => n
            .parse::<u16>()
            .map(i64::from)
            .map_err(|_| format!("{s:?}: the path is the database number (e.g. /0)"))?,
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(Address {
        host,
        port,
        db,
        tls,
    })
}

fn key_material(
    r: Option<&crate::config::SecretRef>,
    key: &str,
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<Secret> {
    let secret = secret(r, key, ctx, p)?;
    if secret.expose().len() < MIN_KEY_BYTES {
        p.at(
            key,
            format!(
                "must be at least {MIN_KEY_BYTES} bytes of random key material (e.g. `openssl rand -hex 32`)"
            ),
        );
        return None;
    }
    Some(secret)
}

fn secret(
    r: Option<&crate::config::SecretRef>,
    key: &str,
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<Secret> {
    match r?.resolve_with(ctx.base_dir, ctx.env) {
        Ok(s) => Some(s),
        Err(e) => {
            p.at(key, e);
            None
        }
    }
}

fn on_down(raw: &RawOnRedisDown, p: &mut Problems) -> OnRedisDown {
    let mut policy = |value: &str, key: &str, default: DownPolicy| match value {
        "local" => DownPolicy::Local,
        "refuse" => DownPolicy::Refuse,
        _ => {
            p.at(
                format!("redis.on_redis_down.{key}"),
                format!("{value:?}: must be \"local\" or \"refuse\""),
            );
            default
        }
    };
    let defaults = OnRedisDown::default();
    OnRedisDown {
        backoff: policy(&raw.backoff, "backoff", defaults.backoff),
        quotas: policy(&raw.quotas, "quotas", defaults.quotas),
        refresh: policy(&raw.refresh, "refresh", defaults.refresh),
        amo_replay: policy(&raw.amo_replay, "amo_replay", defaults.amo_replay),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_redis_only_to_loopback() {
        assert!(parse_url("redis://127.0.0.1:6380/2").is_ok_and(|a| a.port == 6380 && a.db == 2));
        assert!(parse_url("redis://[::1]").is_ok_and(|a| a.host == "::1" && a.port == 6379));
        assert!(parse_url("redis://localhost").is_ok());
        let e = parse_url("redis://cache.internal:6379").err().unwrap();
        assert!(e.contains("only allowed to loopback"), "{e}");
        assert!(parse_url("rediss://cache.internal:6379/0").is_ok_and(|a| a.tls));
    }

    #[test]
    fn urls_with_credentials_queries_or_other_schemes_are_refused() {
        for bad in [
            "redis://:pw@127.0.0.1",
            "redis://127.0.0.1/?protocol=resp3",
            "rediss://h/#insecure",
            "http://127.0.0.1",
            "redis://127.0.0.1:0",
            "redis://127.0.0.1/x",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let e = parse_url("redis://user:hunter2@127.0.0.1").err().unwrap();
        assert!(!e.contains("hunter2") && e.contains("credentials"), "{e}");
    }
}
