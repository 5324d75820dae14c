//! `[bearer]` and the options of `auth = { policy = "bearer", ... }`: which OAuth server
//! introspects tokens, the cache, and each route's scope requirements.

use http::Method;

use crate::config::Problems;
use crate::config::model::{BearerPolicy, BearerSettings, EndpointRule, PresetName};
use crate::config::raw::{RawAuth, RawBearer};

/// Bound on configured scope strings (FxA's OAuth endpoints cap scope strings at 256).
const MAX_SCOPE_LEN: usize = 256;

pub fn settings(
    raw: Option<&RawBearer>,
    upstream_names: &[Option<String>],
    needed: bool,
    p: &mut Problems,
) -> Option<BearerSettings> {
    let Some(raw) = raw else {
        if needed && !p.reported("bearer") {
            p.at("bearer", "a route uses auth policy \"bearer\": add a [bearer] section naming the OAuth upstream (oauth_upstream)");
        }
        return None;
    };
    let name = raw.oauth_upstream.as_deref();
    let oauth_upstream = name.and_then(|name| {
        upstream_names
            .iter()
            .position(|n| n.as_deref() == Some(name))
    });
    if let Some(name) = name
        && oauth_upstream.is_none()
        && upstream_names.iter().all(Option::is_some)
    {
        p.at(
            "bearer.oauth_upstream",
            format!("unknown upstream {name:?}"),
        );
    }
    for (key, d) in [
        ("cache_max_ttl", &raw.cache_max_ttl),
        ("negative_ttl", &raw.negative_ttl),
        ("breaker", &raw.breaker),
    ] {
        if d.0.is_zero() {
            p.at(format!("bearer.{key}"), "must be greater than 0");
        }
    }
    if raw.cache_size == 0 {
        p.at("bearer.cache_size", "must be at least 1");
    }
    Some(BearerSettings {
        oauth_upstream: oauth_upstream?,
        cache_max_ttl: raw.cache_max_ttl.0,
        negative_ttl: raw.negative_ttl.0,
        cache_size: raw.cache_size,
        breaker: raw.breaker.0,
    })
}

pub fn policy(raw: &RawAuth) -> Result<BearerPolicy, (&'static str, String)> {
    let preset = match raw.preset.as_deref() {
        None => None,
        Some("profile") => Some(PresetName::Profile),
        Some("tokenserver") => Some(PresetName::TokenServer),
        Some("oauth") => Some(PresetName::OAuth),
        Some(other) => {
            return Err((
                "auth.preset",
                format!("unknown preset {other:?} (\"profile\", \"tokenserver\", \"oauth\")"),
            ));
        }
    };
    let scopes = raw.scopes.clone().unwrap_or_default();
    scope_list(&scopes).map_err(|e| ("auth.scopes", e))?;
    let mut endpoints = Vec::new();
    // Rows that could not be read (reported) are left out; the file is refused anyway.
    let rows = raw.endpoints.iter().flatten().flatten();
    for (e, path) in rows.filter_map(|e| Some((e, e.path.as_deref()?))) {
        if !path.starts_with('/') {
            return Err((
                "auth.endpoints",
                format!("endpoint path {path:?} must start with \"/\""),
            ));
        }
        if e.public && !e.scopes.is_empty() {
            return Err((
                "auth.endpoints",
                format!("endpoint {path:?} is public and lists scopes"),
            ));
        }
        scope_list(&e.scopes).map_err(|m| ("auth.endpoints", m))?;
        let methods = match &e.methods {
            None => None,
            Some(ms) => Some(
                ms.iter()
                    .map(|m| {
                        Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                            .map_err(|_| ("auth.endpoints", format!("{m:?} is not an HTTP method")))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let path = path.trim_end_matches('/');
        endpoints.push(EndpointRule {
            path: if path.is_empty() {
                "/".to_owned()
            } else {
                path.to_owned()
            },
            methods,
            scopes: (!e.public).then(|| e.scopes.clone()),
        });
    }
    endpoints.sort_by_key(|e| std::cmp::Reverse(e.path.len()));
    Ok(BearerPolicy {
        preset,
        scopes,
        endpoints,
        identity_headers: raw.identity_headers.unwrap_or(false),
    })
}

/// Each scope: one printable value (FxA's grammar: no space, `"` or `\`), bounded.
fn scope_list(scopes: &[String]) -> Result<(), String> {
    for s in scopes {
        let ok = !s.is_empty()
            && s.len() <= MAX_SCOPE_LEN
            && s.bytes()
                .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
        if !ok {
            return Err(format!(
                "{s:?} is not a scope (one value, printable, no spaces, quotes or backslashes)"
            ));
        }
    }
    Ok(())
}
