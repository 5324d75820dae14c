//! `[[amo_credentials]]`, `[[amo_issuers]]` and `[amo_verify]`: AMO API keys the gateway signs
//! with or accepts. Secrets are read here; a lifetime over AMO's 300 s is refused at load.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use super::{Context, UniqueNames};
use crate::config::Problems;
use crate::config::model::{AmoCredentialConfig, AmoIssuerConfig, AmoVerifySettings, IpNet};
use crate::config::raw::{RawAmoCredential, RawAmoIssuer, RawAmoVerify};

/// AMO refuses `exp - iat` above this (`MAX_APIKEY_JWT_AUTH_TOKEN_LIFETIME`).
const MAX_LIFETIME: Duration = Duration::from_secs(300);
/// More leeway than this would make the `iat`/`exp` checks meaningless.
const MAX_LEEWAY: Duration = Duration::from_secs(60);

pub fn credentials(
    raw: &[Option<RawAmoCredential>],
    listener_names: &[Option<String>],
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Vec<Option<AmoCredentialConfig>> {
    let mut names = UniqueNames::new("credential");
    raw.iter()
        .enumerate()
        .map(|(i, c)| {
            let c = c.as_ref()?;
            let key = format!("amo_credentials[{i}]");
            if let Some(name) = &c.name {
                names.check(name, &format!("{key}.name"), p);
            }
            credential(c, &key, listener_names, ctx, p)
        })
        .collect()
}

fn credential(
    c: &RawAmoCredential,
    key: &str,
    listener_names: &[Option<String>],
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<AmoCredentialConfig> {
    let k = |field: &str| format!("{key}.{field}");
    let api_key = api_key(c.api_key.as_deref(), &k("api_key"), p);
    let lifetime = c.lifetime.0;
    let lifetime_ok =
        if lifetime.is_zero() || lifetime > MAX_LIFETIME || lifetime.subsec_nanos() != 0 {
            p.at(
                k("lifetime"),
                "must be whole seconds between \"1s\" and \"300s\" (AMO refuses longer tokens)",
            );
            false
        } else {
            true
        };
    if c.clock_offset_seconds.unsigned_abs() > 3600 {
        p.at(k("clock_offset_seconds"), "must be within ±3600 seconds");
    }
    for (j, l) in c.selectable_from_listeners.iter().enumerate() {
        let known = listener_names.iter().flatten().any(|n| n == l);
        if !known && listener_names.iter().all(Option::is_some) {
            p.at(
                format!("{key}.selectable_from_listeners[{j}]"),
                format!("unknown listener {l:?}"),
            );
        }
    }
    let peers: Vec<IpNet> = c
        .selectable_from_peers
        .iter()
        .enumerate()
        .filter_map(|(j, s)| {
            s.parse()
                .map_err(|e| p.at(format!("{key}.selectable_from_peers[{j}]"), e))
                .ok()
        })
        .collect();
    let secret = secret(c.secret.as_ref(), &k("secret"), ctx.base_dir, ctx, p);
    Some(AmoCredentialConfig {
        name: c.name.clone()?,
        api_key: api_key?,
        secret: secret?,
        lifetime: lifetime_ok.then_some(lifetime)?,
        clock_offset_seconds: c.clock_offset_seconds,
        selectable_from_listeners: c.selectable_from_listeners.clone(),
        selectable_from_peers: peers,
    })
}

pub fn issuers(
    raw: &[Option<RawAmoIssuer>],
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Vec<Option<AmoIssuerConfig>> {
    let mut keys = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.as_ref()?;
            let key = format!("amo_issuers[{i}]");
            if let Some(k) = &r.api_key
                && !keys.insert(k.as_str())
            {
                p.at(format!("{key}.api_key"), format!("duplicate issuer {k:?}"));
            }
            let api_key = api_key(r.api_key.as_deref(), &format!("{key}.api_key"), p);
            let secret = secret(
                r.secret.as_ref(),
                &format!("{key}.secret"),
                ctx.base_dir,
                ctx,
                p,
            );
            Some(AmoIssuerConfig {
                api_key: api_key?,
                secret: secret?,
                require_jti: r.require_jti,
            })
        })
        .collect()
}

pub fn verify_settings(raw: &RawAmoVerify, p: &mut Problems) -> AmoVerifySettings {
    if raw.leeway.0 > MAX_LEEWAY || raw.leeway.0.subsec_nanos() != 0 {
        p.at(
            "amo_verify.leeway",
            "must be whole seconds, at most \"60s\"",
        );
    }
    if raw.replay_cache_size == 0 {
        p.at("amo_verify.replay_cache_size", "must be at least 1");
    }
    AmoVerifySettings {
        leeway: raw.leeway.0,
        replay_cache_size: raw.replay_cache_size,
    }
}

/// `None` for a key that could not be read (already reported) or is not valid.
fn api_key(s: Option<&str>, key: &str, p: &mut Problems) -> Option<String> {
    let s = s?;
    let ok = !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic());
    if !ok {
        p.at(key, "must be 1-256 printable ASCII characters (AMO's \"JWT issuer\", e.g. \"user:12345:67\")");
        return None;
    }
    Some(s.to_owned())
}

fn secret(
    r: Option<&crate::config::SecretRef>,
    key: &str,
    base_dir: &Path,
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<crate::config::Secret> {
    match r?.resolve_with(base_dir, ctx.env) {
        Ok(s) => Some(s),
        Err(e) => {
            p.at(key, e);
            None
        }
    }
}
