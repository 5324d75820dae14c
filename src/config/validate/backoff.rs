//! `[backoff]`, upstream `rate_limit` and route `quota` / `backoff_scope`: the knobs of the
//! back-off gates and quotas (issue 7).

use std::time::Duration;

use crate::config::Problems;
use crate::config::model::{
    BackoffScope, BackoffSettings, QuotaKey, QuotaSettings, RampSettings, RouteQuota,
};
use crate::config::raw::{RawBackoff, RawQuota};

/// Windows longer than this are not back-off any more but an outage; refuse the config.
const MAX_WINDOW_CEILING: Duration = Duration::from_secs(24 * 3600);

pub fn settings(raw: &RawBackoff, p: &mut Problems) -> BackoffSettings {
    let k = |f: &str| format!("backoff.{f}");
    if raw.max_window.0.is_zero() || raw.max_window.0 > MAX_WINDOW_CEILING {
        p.at(k("max_window"), "must be between \"1s\" and \"24h\"");
    }
    let default_503_window = raw
        .default_503_window
        .as_ref()
        .map(|d| d.0)
        .filter(|d| !d.is_zero());
    let steps = u32::try_from(raw.ramp_steps)
        .ok()
        .filter(|s| (1..=100).contains(s));
    if steps.is_none() {
        p.at(k("ramp_steps"), "must be between 1 and 100");
    }
    let start = u8::try_from(raw.ramp_start_percent)
        .ok()
        .filter(|s| (1..=100).contains(s));
    if start.is_none() {
        p.at(k("ramp_start_percent"), "must be between 1 and 100");
    }
    let rate = u32::try_from(raw.ramp_base_rate).ok().filter(|r| *r >= 1);
    if rate.is_none() {
        p.at(
            k("ramp_base_rate"),
            "must be at least 1 (requests per second at the end of the ramp)",
        );
    }
    let ramp = match (raw.ramp_period.0.is_zero(), steps, start, rate) {
        (false, Some(steps), Some(start_percent), Some(base_rate_per_sec)) => Some(RampSettings {
            period: raw.ramp_period.0,
            steps,
            start_percent,
            base_rate_per_sec,
        }),
        _ => None,
    };
    let max_scoped_windows = usize::try_from(raw.max_scoped_windows).unwrap_or(usize::MAX);
    if max_scoped_windows == 0 {
        p.at(k("max_scoped_windows"), "must be at least 1");
    }
    BackoffSettings {
        max_window: raw.max_window.0,
        default_503_window,
        honour_backoff_header: raw.honour_backoff_header,
        ramp,
        max_scoped_windows,
    }
}

/// An upstream's `rate_limit`: requests and window only.
pub fn upstream_rate_limit(raw: &RawQuota, key: &str, p: &mut Problems) -> Option<QuotaSettings> {
    if raw.key.is_some() {
        p.at(
            format!("{key}.key"),
            "upstream rate limits count every caller together; key is a route option",
        );
    }
    if raw.headers.is_some() {
        p.at(format!("{key}.headers"), "headers is a route option");
    }
    quota(raw, key, p)
}

pub fn route_quota(raw: &RawQuota, key: &str, p: &mut Problems) -> Option<RouteQuota> {
    let quota_key = match raw.key.as_deref().unwrap_or("peer") {
        "peer" => Some(QuotaKey::Peer),
        "identity" => Some(QuotaKey::Identity),
        "client" => Some(QuotaKey::Client),
        other => match other.strip_prefix("header:") {
            Some(name) => match http::HeaderName::from_bytes(name.trim().as_bytes()) {
                Ok(name) => Some(QuotaKey::Header(name)),
                Err(_) => {
                    p.at(
                        format!("{key}.key"),
                        format!("{name:?} is not a header name"),
                    );
                    None
                }
            },
            None => {
                p.at(format!("{key}.key"), format!("unknown quota key {other:?} (\"peer\", \"client\", \"identity\" or \"header:<Name>\")"));
                None
            }
        },
    };
    let quota = quota(raw, key, p);
    Some(RouteQuota {
        quota: quota?,
        key: quota_key?,
        headers: raw.headers.unwrap_or(false),
    })
}

fn quota(raw: &RawQuota, key: &str, p: &mut Problems) -> Option<QuotaSettings> {
    let requests = raw
        .requests
        .map(|r| u32::try_from(r).ok().filter(|r| *r >= 1));
    if requests == Some(None) {
        p.at(
            format!("{key}.requests"),
            "must be between 1 and 4294967295",
        );
    }
    let window = raw.window?.0;
    if window < Duration::from_secs(1) || window.subsec_nanos() != 0 {
        p.at(
            format!("{key}.window"),
            "must be whole seconds, at least \"1s\"",
        );
        return None;
    }
    Some(QuotaSettings {
        requests: requests??,
        window,
    })
}

pub fn backoff_scope(raw: Option<&str>, key: &str, p: &mut Problems) -> BackoffScope {
    match raw.unwrap_or("auto") {
        "auto" => BackoffScope::Auto,
        "upstream" => BackoffScope::Upstream,
        other => {
            p.at(
                key,
                format!("unknown back-off scope {other:?} (\"auto\" or \"upstream\")"),
            );
            BackoffScope::Auto
        }
    }
}
