//! Route selection: optional host, then the longest path prefix on a segment boundary, then the
//! API version (the path segment right after the prefix) and the method.
//!
//! Never allocates on the hot path: everything a match needs (the `Allow` header, deprecation
//! headers) is built once when the router is.

use std::time::SystemTime;

use http::{HeaderValue, Method};

use crate::config::{DeprecatedVersion, RouteConfig};
use crate::errno::GatewayError;

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    pub index: usize,
    pub config: RouteConfig,
    allow: HeaderValue,
    deprecated: Vec<CompiledDeprecation>,
}

#[derive(Debug)]
struct CompiledDeprecation {
    version: String,
    sunset: Option<SystemTime>,
    /// `Deprecation: @<unix seconds>` (RFC 9745).
    deprecation_header: HeaderValue,
    /// `Sunset: <HTTP-date>` (RFC 8594).
    sunset_header: Option<HeaderValue>,
}

/// The outcome of a successful match.
#[derive(Debug)]
pub struct RouteMatch<'r> {
    pub route: &'r Route,
    /// Path after the prefix ("" or starting with '/').
    pub rest_start: usize,
    /// Headers to add to every response on a deprecated version.
    pub deprecation: Option<(&'r HeaderValue, Option<&'r HeaderValue>)>,
}

#[derive(Debug)]
pub struct Router {
    /// Sorted by prefix length, longest first; host-specific before host-less at equal length.
    routes: Vec<Route>,
}

impl Router {
    pub fn new(configs: &[RouteConfig]) -> Router {
        let mut routes: Vec<Route> = configs
            .iter()
            .enumerate()
            .map(|(index, rc)| Route::compile(index, rc.clone()))
            .collect();
        routes.sort_by(|a, b| {
            b.config
                .path_prefix
                .len()
                .cmp(&a.config.path_prefix.len())
                .then(b.config.host.is_some().cmp(&a.config.host.is_some()))
        });
        Router { routes }
    }

    /// The route for `host` and `path`, without version or method checks (to attribute an
    /// error to its route in logs and metrics).
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| r.host_matches(host) && prefix_matches(&r.config.path_prefix, path))
    }

    /// Finds the route for `host` (port already removed, any case) and `path`, and checks the
    /// API version and method against it.
    pub fn select<'r>(
        &'r self,
        host: Option<&str>,
        path: &str,
        method: &Method,
        now: SystemTime,
    ) -> Result<RouteMatch<'r>, GatewayError> {
        let route = self.find(host, path).ok_or(GatewayError::RouteNotFound)?;
        let rest_start = route.rest_start();
        let deprecation = route.check_version(&path[rest_start..], now)?;
        if let Some(methods) = &route.config.methods {
            // HEAD rides on GET, as HTTP allows.
            let allowed = methods
                .iter()
                .any(|m| m == method || (m == Method::GET && method == Method::HEAD));
            if !allowed {
                return Err(GatewayError::MethodNotAllowed {
                    allow: route.allow.clone(),
                });
            }
        }
        Ok(RouteMatch {
            route,
            rest_start,
            deprecation,
        })
    }
}

impl Route {
    fn compile(index: usize, config: RouteConfig) -> Route {
        let allow = config
            .methods
            .as_ref()
            .map(|ms| ms.iter().map(Method::as_str).collect::<Vec<_>>().join(", "))
            .and_then(|s| HeaderValue::from_str(&s).ok())
            .unwrap_or_else(|| HeaderValue::from_static(""));
        let deprecated = config
            .deprecated_versions
            .iter()
            .map(CompiledDeprecation::new)
            .collect();
        Route {
            index,
            config,
            allow,
            deprecated,
        }
    }

    fn host_matches(&self, host: Option<&str>) -> bool {
        match (&self.config.host, host) {
            (None, _) => true,
            (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
            (Some(_), None) => false,
        }
    }

    /// `Deprecation` and `Sunset` for a request to `path` on a deprecated version of this
    /// route, whatever the answer (the 410 after the sunset included).
    pub fn deprecation(&self, path: &str) -> Option<(&HeaderValue, Option<&HeaderValue>)> {
        let rest = path.get(self.rest_start()..)?;
        let version = rest.trim_start_matches('/').split('/').next().unwrap_or("");
        let dep = self.deprecated.iter().find(|d| d.version == version)?;
        Some((&dep.deprecation_header, dep.sunset_header.as_ref()))
    }

    /// Where the path after the prefix starts.
    fn rest_start(&self) -> usize {
        if self.config.path_prefix == "/" {
            0
        } else {
            self.config.path_prefix.len()
        }
    }

    fn check_version(
        &self,
        rest: &str,
        now: SystemTime,
    ) -> Result<Option<(&HeaderValue, Option<&HeaderValue>)>, GatewayError> {
        if self.config.versions.is_empty() && self.deprecated.is_empty() {
            return Ok(None);
        }
        let version = rest.trim_start_matches('/').split('/').next().unwrap_or("");
        if let Some(dep) = self.deprecated.iter().find(|d| d.version == version) {
            if dep.sunset.is_some_and(|sunset| now >= sunset) {
                return Err(GatewayError::VersionGone {
                    version: version.to_owned(),
                });
            }
            return Ok(Some((&dep.deprecation_header, dep.sunset_header.as_ref())));
        }
        if self.config.versions.iter().any(|v| v == version) {
            Ok(None)
        } else {
            Err(GatewayError::VersionNotSupported {
                version: truncate(version, 32).to_owned(),
            })
        }
    }
}

impl CompiledDeprecation {
    fn new(d: &DeprecatedVersion) -> CompiledDeprecation {
        let secs = crate::clock::unix_seconds(d.deprecation);
        let deprecation_header = HeaderValue::from_str(&format!("@{secs}"))
            .unwrap_or_else(|_| HeaderValue::from_static("@0"));
        let sunset_header = d
            .sunset
            .and_then(|t| HeaderValue::from_str(&httpdate::fmt_http_date(t)).ok());
        CompiledDeprecation {
            version: d.version.clone(),
            sunset: d.sunset,
            deprecation_header,
            sunset_header,
        }
    }
}

/// `/profile` matches `/profile` and `/profile/...`, never `/profilex`.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return path.starts_with('/');
    }
    path.starts_with(prefix) && matches!(path.as_bytes().get(prefix.len()), None | Some(b'/'))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
