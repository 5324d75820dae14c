//! `[[routes]]`: host and prefix matching, the upstream reference, methods, API versions with
//! deprecation/sunset dates, and the auth policy.

use std::collections::HashSet;

use http::Method;

use super::{UniqueNames, dns_name};
use crate::config::Problems;
use crate::config::model::{AuthPolicy, DeprecatedVersion, RouteConfig};
use crate::config::raw::{RawAuth, RawDeprecatedVersion, RawRoute};

/// Names auth policies refer to: `[[amo_credentials]]` names and `[[amo_issuers]]` API keys
/// (`None` where an element could not be read).
pub struct AuthNames {
    pub credentials: Vec<Option<String>>,
    pub issuers: Vec<Option<String>>,
}

pub fn validate(
    raw: &[Option<RawRoute>],
    upstream_names: &[Option<String>],
    auth_names: &AuthNames,
    p: &mut Problems,
) -> Vec<Option<RouteConfig>> {
    let mut names = UniqueNames::new("route");
    let mut matches = HashSet::new();
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let r = r.as_ref()?;
            let key = format!("routes[{i}]");
            if let Some(name) = &r.name {
                names.check(name, &format!("{key}.name"), p);
            }
            route(r, &key, upstream_names, auth_names, &mut matches, p)
        })
        .collect()
}

fn route(
    r: &RawRoute,
    key: &str,
    upstream_names: &[Option<String>],
    auth_names: &AuthNames,
    matches: &mut HashSet<(Option<String>, String)>,
    p: &mut Problems,
) -> Option<RouteConfig> {
    let k = |field: &str| format!("{key}.{field}");
    let host = match r.host.as_deref().map(|h| dns_name(h, false)) {
        None => Some(None),
        Some(Ok(h)) => Some(Some(h)),
        Some(Err(e)) => {
            p.at(k("host"), e);
            None
        }
    };
    let path_prefix = r
        .path_prefix
        .as_deref()
        .and_then(|s| path_prefix(s).map_err(|e| p.at(k("path_prefix"), e)).ok());
    // Checked whatever else is wrong with the route.
    if let (Some(host), Some(prefix)) = (&host, &path_prefix)
        && !matches.insert((host.clone(), prefix.clone()))
    {
        p.at(
            k("path_prefix"),
            format!(
                "another route already matches host {} and path prefix {prefix:?}",
                host.as_deref().unwrap_or("(any)"),
            ),
        );
    }
    let upstream = r.upstream.as_deref();
    let position =
        upstream.and_then(|u| upstream_names.iter().position(|n| n.as_deref() == Some(u)));
    // An upstream whose name could not be read may be the one meant: stay quiet then.
    if let Some(upstream) = upstream
        && position.is_none()
        && upstream_names.iter().all(Option::is_some)
    {
        let known: Vec<&str> = upstream_names
            .iter()
            .flatten()
            .map(String::as_str)
            .collect();
        p.at(
            k("upstream"),
            format!(
                "unknown upstream {:?} (defined: {})",
                upstream,
                list(&known)
            ),
        );
    }
    let methods = r.methods.as_ref().map(|m| methods(m, &k("methods"), p));
    let versions = versions(r, key, p);
    let options_unread =
        p.reported(&k("auth.credential")) || p.reported(&k("auth.header_selection"));
    let auth = auth(&r.auth, auth_names, options_unread).map_err(|(field, e)| p.at(k(field), e));
    let quota = r
        .quota
        .as_ref()
        .map(|q| super::backoff::route_quota(q, &k("quota"), p));
    let backoff_scope =
        super::backoff::backoff_scope(r.backoff_scope.as_deref(), &k("backoff_scope"), p);
    let refresh = super::refresh::route(r, auth.as_ref().ok().and_then(Option::as_ref), key, p);
    Some(RouteConfig {
        name: r.name.clone()?,
        host: host?,
        path_prefix: path_prefix?,
        upstream: position?,
        strip_prefix: r.strip_prefix,
        methods,
        versions: versions.0,
        deprecated_versions: versions.1,
        rewrite_errors: r.rewrite_errors,
        auth: auth.ok()??,
        quota: match quota {
            Some(q) => Some(q?),
            None => None,
        },
        backoff_scope,
        refresh,
    })
}

/// Starts with `/`; trailing `/` removed (except for `/` itself); no query, fragment, empty
/// or dot segments, whitespace or control characters.
pub(crate) fn path_prefix(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} must start with \"/\""));
    }
    let trimmed = s.trim_end_matches('/');
    let bad_char = trimmed
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || "?#%".contains(*c));
    if let Some(c) = bad_char {
        return Err(format!("{s:?} contains {c:?}, which a path prefix cannot"));
    }
    if trimmed
        .split('/')
        .skip(1)
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
    {
        return Err(format!("{s:?} has an empty, \".\" or \"..\" segment"));
    }
    Ok(if trimmed.is_empty() {
        "/".to_owned()
    } else {
        trimmed.to_owned()
    })
}

fn methods(raw: &[String], key: &str, p: &mut Problems) -> Vec<Method> {
    if raw.is_empty() {
        p.at(
            key,
            "an empty list allows nothing; omit methods to allow every method",
        );
    }
    let mut out: Vec<Method> = Vec::with_capacity(raw.len());
    for (i, m) in raw.iter().enumerate() {
        let upper = m.to_ascii_uppercase();
        match Method::from_bytes(upper.as_bytes()) {
            Ok(method) if !out.contains(&method) => out.push(method),
            Ok(_) => p.at(format!("{key}[{i}]"), format!("{upper} is listed twice")),
            Err(_) => p.at(
                format!("{key}[{i}]"),
                format!("{m:?} is not an HTTP method"),
            ),
        }
    }
    out
}

/// Accepted versions plus deprecated ones. A deprecated version is accepted implicitly: the
/// returned `versions` lists the configured ones, then each deprecated one not already there.
fn versions(r: &RawRoute, key: &str, p: &mut Problems) -> (Vec<String>, Vec<DeprecatedVersion>) {
    let mut versions: Vec<String> = Vec::with_capacity(r.versions.len());
    for (i, v) in r.versions.iter().enumerate() {
        let vkey = format!("{key}.versions[{i}]");
        match check_version(v) {
            Err(e) => p.at(vkey, e),
            Ok(()) if versions.contains(v) => p.at(vkey, format!("version {v:?} is listed twice")),
            Ok(()) => versions.push(v.clone()),
        }
    }
    let mut seen = HashSet::new();
    let mut deprecated = Vec::with_capacity(r.deprecated_versions.len());
    for (i, d) in r.deprecated_versions.iter().enumerate() {
        let Some(d) = d else { continue };
        let dkey = format!("{key}.deprecated_versions[{i}]");
        if let Some(dv) = deprecated_version(d, &dkey, &mut seen, p) {
            if !versions.contains(&dv.version) {
                versions.push(dv.version.clone());
            }
            deprecated.push(dv);
        }
    }
    (versions, deprecated)
}

fn deprecated_version(
    d: &RawDeprecatedVersion,
    key: &str,
    seen: &mut HashSet<String>,
    p: &mut Problems,
) -> Option<DeprecatedVersion> {
    let mut ok = true;
    match &d.version {
        None => ok = false,
        Some(v) => {
            if let Err(e) = check_version(v) {
                p.at(format!("{key}.version"), e);
                ok = false;
            } else if !seen.insert(v.clone()) {
                p.at(
                    format!("{key}.version"),
                    format!("version {v:?} is deprecated twice"),
                );
                ok = false;
            }
        }
    }
    if let (Some(sunset), Some(deprecation)) = (d.sunset, d.deprecation)
        && sunset.0 <= deprecation.0
    {
        p.at(
            format!("{key}.sunset"),
            "the sunset must come after the deprecation date",
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(DeprecatedVersion {
        version: d.version.clone()?,
        deprecation: d.deprecation?.0,
        sunset: d.sunset.map(|s| s.0),
    })
}

/// A version is one path segment: `v1`, `1.0`, `v5`.
fn check_version(v: &str) -> Result<(), String> {
    let ok = !v.is_empty()
        && v != "."
        && v != ".."
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{v:?} is not a version path segment (e.g. \"v1\" or \"1.0\")"
        ))
    }
}

/// The auth policy and its options; errors name the offending key under `auth`. `Ok(None)`:
/// the policy names something that could not be read (already reported there).
/// `options_unread`: `credential` or `header_selection` is there but could not be read.
fn auth(
    raw: &RawAuth,
    names: &AuthNames,
    options_unread: bool,
) -> Result<Option<AuthPolicy>, (&'static str, String)> {
    // A policy that could not be read (reported) may take any of the options.
    let Some(policy) = raw.policy.as_deref() else {
        return Ok(None);
    };
    let refuse =
        |field: &'static str| Err((field, format!("not an option of auth policy {policy:?}")));
    if policy != "bearer" {
        let bearer_options = [
            ("auth.preset", raw.preset.is_some()),
            ("auth.scopes", raw.scopes.is_some()),
            ("auth.endpoints", raw.endpoints.is_some()),
            ("auth.identity_headers", raw.identity_headers.is_some()),
        ];
        if let Some((field, _)) = bearer_options.iter().find(|(_, present)| *present) {
            return refuse(field);
        }
    }
    let takes_credentials = policy == "amo-jwt";
    if raw.credential.is_some() && !takes_credentials {
        return refuse("auth.credential");
    }
    if raw.header_selection.is_some() && !takes_credentials {
        return refuse("auth.header_selection");
    }
    if raw.issuers.is_some() && policy != "amo-jwt-verify" {
        return refuse("auth.issuers");
    }
    match policy {
        "none" => Ok(Some(AuthPolicy::None)),
        "security-events" => Ok(Some(AuthPolicy::SecurityEvents)),
        "bearer" => super::bearer::policy(raw).map(|p| Some(AuthPolicy::Bearer(Box::new(p)))),
        "amo-jwt" => {
            let header_selection = raw.header_selection.unwrap_or(false);
            let credential = match &raw.credential {
                Some(name) => match lookup(&names.credentials, name) {
                    Some(i) => Some(i),
                    // A credential whose entry could not be read may be the one meant.
                    None if names.credentials.iter().any(Option::is_none) => return Ok(None),
                    None => {
                        let defined = list(&flat(&names.credentials));
                        return Err((
                            "auth.credential",
                            format!("unknown AMO credential {name:?} (defined: {defined})"),
                        ));
                    }
                },
                None if header_selection => None,
                None if options_unread => return Ok(None),
                None => {
                    return Err((
                        "auth",
                        "amo-jwt needs a credential, or header_selection = true".to_owned(),
                    ));
                }
            };
            Ok(Some(AuthPolicy::AmoJwt {
                credential,
                header_selection,
            }))
        }
        "amo-jwt-verify" => {
            if names.issuers.is_empty() {
                return Err((
                    "auth",
                    "amo-jwt-verify needs at least one [[amo_issuers]]".to_owned(),
                ));
            }
            let issuers = match &raw.issuers {
                None => (0..names.issuers.len()).collect(),
                Some(keys) if keys.is_empty() => {
                    return Err((
                        "auth.issuers",
                        "the allowlist is empty: list API keys, or omit it to accept every issuer"
                            .to_owned(),
                    ));
                }
                Some(keys) => {
                    let mut found = Vec::with_capacity(keys.len());
                    for k in keys {
                        match lookup(&names.issuers, k) {
                            Some(i) => found.push(i),
                            None if names.issuers.iter().any(Option::is_none) => return Ok(None),
                            None => {
                                let defined = list(&flat(&names.issuers));
                                return Err((
                                    "auth.issuers",
                                    format!("unknown AMO issuer {k:?} (defined: {defined})"),
                                ));
                            }
                        }
                    }
                    found
                }
            };
            Ok(Some(AuthPolicy::AmoJwtVerify { issuers }))
        }
        other => Err((
            "auth",
            format!(
                "unknown auth policy {other:?} (known: \"none\", \"bearer\", \"amo-jwt\", \"amo-jwt-verify\", \"security-events\")"
            ),
        )),
    }
}

fn lookup(names: &[Option<String>], name: &str) -> Option<usize> {
    names.iter().position(|n| n.as_deref() == Some(name))
}

fn flat(names: &[Option<String>]) -> Vec<&str> {
    names.iter().flatten().map(String::as_str).collect()
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
