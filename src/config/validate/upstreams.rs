//! `[[upstreams]]`: base URLs (https, or http on loopback only), CA bundles, timeouts and
//! pool sizes.

use http::Uri;
use http::uri::{PathAndQuery, Scheme};

use super::listeners::check_certificates;
use super::{Context, UniqueNames, count, nonzero};
use crate::config::Problems;
use crate::config::model::{ResolverSettings, UpstreamConfig};
use crate::config::net::is_loopback_host;
use crate::config::raw::{RawResolver, RawUpstream};
use crate::config::secret::{read_file, resolve_path};

pub fn validate(
    raw: &[Option<RawUpstream>],
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Vec<Option<UpstreamConfig>> {
    let mut names = UniqueNames::new("upstream");
    raw.iter()
        .enumerate()
        .map(|(i, u)| {
            let u = u.as_ref()?;
            let key = format!("upstreams[{i}]");
            if let Some(name) = &u.name {
                names.check(name, &format!("{key}.name"), p);
            }
            upstream(u, &key, ctx, p)
        })
        .collect()
}

/// `[resolver]`: every pinned name a host name with at least one IP address.
pub fn resolver(raw: &RawResolver, p: &mut Problems) -> ResolverSettings {
    let mut hosts = Vec::with_capacity(raw.hosts.len());
    for (name, ips) in &raw.hosts {
        let key = format!("resolver.hosts.{name}");
        let valid_name = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_name {
            p.at(&key, "not a host name");
        }
        if ips.is_empty() {
            p.at(&key, "needs at least one address");
        }
        let addrs: Vec<_> = ips
            .iter()
            .enumerate()
            .filter_map(|(i, ip)| {
                ip.parse()
                    .map_err(|_| {
                        p.at(
                            format!("{key}[{i}]"),
                            format!("{ip:?} is not an IP address"),
                        )
                    })
                    .ok()
            })
            .collect();
        hosts.push((name.to_ascii_lowercase(), addrs));
    }
    ResolverSettings {
        hosts,
        system: raw.system,
    }
}

fn upstream(
    u: &RawUpstream,
    key: &str,
    ctx: &Context<'_>,
    p: &mut Problems,
) -> Option<UpstreamConfig> {
    let url = u.url.as_deref().and_then(|url| {
        parse_url(url)
            .map_err(|e| p.at(format!("{key}.url"), e))
            .ok()
    });
    let ca_pem = u.ca_file.as_ref().and_then(|file| {
        read_file(&resolve_path(ctx.base_dir, file))
            .and_then(|pem| check_certificates(&pem).map(|()| pem))
            .map_err(|e| p.at(format!("{key}.ca_file"), e))
            .ok()
    });
    if u.ca_only && u.ca_file.is_none() && !p.reported(&format!("{key}.ca_file")) {
        p.at(format!("{key}.ca_only"), "ca_only = true needs ca_file");
    }
    let k = |field: &str| format!("{key}.{field}");
    // Every check runs before the `?`s below, so none hides another.
    let max_connections = count(u.max_connections, u64::MAX, &k("max_connections"), p);
    let connect_timeout = nonzero(u.connect_timeout, &k("connect_timeout"), p);
    let response_timeout = nonzero(u.response_timeout, &k("response_timeout"), p);
    let pool_idle_timeout = nonzero(u.pool_idle_timeout, &k("pool_idle_timeout"), p);
    let rate_limit = u
        .rate_limit
        .as_ref()
        .and_then(|q| super::backoff::upstream_rate_limit(q, &k("rate_limit"), p));
    Some(UpstreamConfig {
        name: u.name.clone()?,
        url: url?,
        ca_pem,
        ca_only: u.ca_only,
        connect_timeout,
        response_timeout,
        max_connections: max_connections as usize,
        pool_idle_timeout,
        http2: u.http2,
        rate_limit,
    })
}

/// `https://host[:port][/base]`, or `http://` when the host is loopback. The base path loses
/// its trailing `/`; its path is `/` when there is no base.
pub(crate) fn parse_url(s: &str) -> Result<Uri, String> {
    if s.contains('#') {
        return Err(format!("{s:?}: an upstream URL has no fragment (#...)"));
    }
    let uri: Uri = s.parse().map_err(|e| {
        format!("{s:?} is not a valid URL ({e}); expected https://host[:port][/base]")
    })?;
    let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
        return Err(format!(
            "{s:?} must be an absolute URL such as https://host[:port][/base]"
        ));
    };
    if authority.as_str().contains('@') {
        return Err(format!("{s:?}: credentials in the URL are not allowed"));
    }
    if uri.query().is_some() {
        return Err(format!("{s:?}: an upstream URL has no query (?...)"));
    }
    if authority.host().is_empty() {
        return Err(format!("{s:?} has no host"));
    }
    if authority.port().is_some() && authority.port_u16().is_none_or(|port| port == 0) {
        return Err(format!("{s:?}: the port must be 1-65535"));
    }
    if *scheme == Scheme::HTTP {
        if !is_loopback_host(authority.host()) {
            return Err(format!(
                "{s:?}: plain http:// is only allowed to loopback (localhost, 127.0.0.0/8, ::1); \
                 use https://"
            ));
        }
    } else if *scheme != Scheme::HTTPS {
        return Err(format!("{s:?}: scheme must be https (or http on loopback)"));
    }
    let base = uri.path().trim_end_matches('/');
    let path = if base.is_empty() { "/" } else { base };
    let path = PathAndQuery::try_from(path).map_err(|e| format!("{s:?}: bad path: {e}"))?;
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(path)
        .build()
        .map_err(|e| format!("{s:?} is not a valid URL: {e}"))
}
