//! `[refresh]` and the routes' `refresh`/`refresh_scope` keys: the OAuth client the gateway
//! refreshes as, and which routes may refresh.

use crate::auth::scope::ScopeSet;
use crate::config::Problems;
use crate::config::model::{AuthPolicy, RefreshSettings, RouteRefresh, TokenEndpoint};
use crate::config::raw::{RawRefresh, RawRoute};

use super::Context;

/// FxA's refresh grant accepts a scope string of at most 256 characters.
const MAX_SCOPE_LEN: usize = 256;

/// Largest replay buffer accepted: a buffered body is held in memory per request.
const MAX_REPLAY_BODY: u64 = 16 * 1024 * 1024;

pub fn settings(
    raw: Option<&RawRefresh>,
    bearer_upstream: Option<&str>,
    upstream_names: &[Option<String>],
    needed: bool,
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<RefreshSettings> {
    let Some(raw) = raw else {
        if needed && !p.reported("refresh") {
            p.at(
                "refresh",
                "a route sets refresh = true: add a [refresh] section with the OAuth client_id \
                 (and client_secret unless the client is public)",
            );
        }
        return None;
    };
    let upstream_name = raw.oauth_upstream.as_deref().or(bearer_upstream);
    let unread = p.reported("refresh.oauth_upstream") || p.reported("bearer.oauth_upstream");
    let oauth_upstream = match upstream_name {
        None if unread => None,
        None => {
            p.at(
                "refresh.oauth_upstream",
                "name the OAuth server's upstream (or add [bearer] oauth_upstream)",
            );
            None
        }
        Some(name) => {
            let found = upstream_names
                .iter()
                .position(|n| n.as_deref() == Some(name));
            if found.is_none() && upstream_names.iter().all(Option::is_some) {
                p.at(
                    "refresh.oauth_upstream",
                    format!("unknown upstream {name:?}"),
                );
            }
            found
        }
    };
    let token_endpoint = match raw.token_path.as_str() {
        "/v1/token" => Some(TokenEndpoint::OAuth),
        "/v1/oauth/token" => Some(TokenEndpoint::AuthServer),
        other => {
            p.at(
                "refresh.token_path",
                format!("{other:?}: must be \"/v1/token\" (RPs) or \"/v1/oauth/token\""),
            );
            None
        }
    };
    let client_id = raw.client_id.as_deref();
    let client_id_ok = client_id.is_some_and(|id| {
        id.len() == 16
            && id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if client_id.is_some() && !client_id_ok {
        p.at(
            "refresh.client_id",
            "must be an FxA client id: 16 lowercase hex characters",
        );
    }
    let client_secret = match &raw.client_secret {
        None => Some(None),
        Some(r) => match r.resolve_with(ctx.base_dir, ctx.env) {
            Ok(secret) => {
                let s = secret.expose();
                if s.len() == 64 && s.iter().all(u8::is_ascii_hexdigit) {
                    Some(Some(secret))
                } else {
                    p.at(
                        "refresh.client_secret",
                        "must be an FxA client secret: 64 hex characters (the value is not shown)",
                    );
                    None
                }
            }
            Err(e) => {
                p.at("refresh.client_secret", e);
                None
            }
        },
    };
    if raw.max_replay_body.0 > MAX_REPLAY_BODY {
        p.at(
            "refresh.max_replay_body",
            format!("at most {} MiB", MAX_REPLAY_BODY / (1024 * 1024)),
        );
    }
    if raw.grace.0.is_zero() {
        p.at(
            "refresh.grace",
            "must be greater than 0 (it also bounds single-flight reuse)",
        );
    }
    if raw.cache_size == 0 {
        p.at("refresh.cache_size", "must be at least 1");
    }
    Some(RefreshSettings {
        oauth_upstream: oauth_upstream?,
        token_endpoint: token_endpoint?,
        client_id: client_id.filter(|_| client_id_ok)?.to_owned(),
        client_secret: client_secret?,
        max_replay_body: raw.max_replay_body.0,
        grace: raw.grace.0,
        skew: raw.skew.0,
        cache_size: raw.cache_size,
    })
}

/// A route's `refresh` and `refresh_scope`, checked against its auth policy.
pub fn route(
    r: &RawRoute,
    auth: Option<&AuthPolicy>,
    key: &str,
    p: &mut Problems,
) -> Option<RouteRefresh> {
    if !r.refresh {
        if r.refresh_scope.is_some() && !p.reported(&format!("{key}.refresh")) {
            p.at(
                format!("{key}.refresh_scope"),
                "only takes effect with refresh = true",
            );
        }
        return None;
    }
    if let Some(
        AuthPolicy::AmoJwt { .. } | AuthPolicy::AmoJwtVerify { .. } | AuthPolicy::SecurityEvents,
    ) = auth
    {
        p.at(
            format!("{key}.refresh"),
            "refresh works on routes with auth \"none\" or \"bearer\" (OAuth bearer tokens)",
        );
        return None;
    }
    let scope = match &r.refresh_scope {
        None => None,
        Some(s) => {
            let ok = !s.trim().is_empty()
                && s.len() <= MAX_SCOPE_LEN
                && ScopeSet::parse(s).is_ok_and(|set| !set.is_empty());
            if !ok {
                p.at(
                    format!("{key}.refresh_scope"),
                    format!(
                        "{s:?} is not a space-separated list of FxA scopes (at most 256 characters)"
                    ),
                );
                return None;
            }
            Some(s.split_ascii_whitespace().collect::<Vec<_>>().join(" "))
        }
    };
    Some(RouteRefresh { scope })
}
