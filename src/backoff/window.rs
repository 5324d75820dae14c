//! The life of one back-off window, as plain functions over `Option<Window>` (`None` = closed)
//! so the state machine is testable without threads or maps:
//!
//! ```text
//! closed ──429/503/500+RA──▶ blocked ──until passes──▶ half-open ──probe ok──▶ ramp ──period──▶ closed
//!                              ▲   ▲                     │  │                    │
//!                              │   └──── probe fails ────┘  └─ lease expires: next caller probes
//!                              └──────────────── any window-opening answer ──────┘
//! ```
//!
//! Never shortens an open window (`fetch_max`), never grants two live probe leases at once.

use std::time::{Duration, SystemTime};

use http::StatusCode;

use super::retry_after::whole_seconds_up;
use super::{Admission, BackoffPolicy, Denial, RampPolicy, WindowInfo};

/// Errno of the local answer to requests over the ramp rate (auth server "service unavailable").
pub(super) const RAMP_ERRNO: u16 = 201;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Window {
    /// Upstream said "stay away" until `until`; after it, half-open.
    Blocked {
        until: SystemTime,
        status: StatusCode,
        errno: u16,
        /// Half-open only: the probe in flight may report until then; after it, another
        /// caller may probe (the first one's request was dropped or is hanging).
        probe_until: Option<SystemTime>,
    },
    /// A probe succeeded at `start`; traffic is readmitted at a rising rate.
    Ramp {
        start: SystemTime,
        /// Whole seconds since `start` of the slot `admitted` counts.
        second: u64,
        admitted: u32,
    },
}

// === impl Window ===

/// Decides one request. `ramp` is the ramp policy when this scope ramps (upstream scopes).
pub(super) fn admit(
    state: &mut Option<Window>,
    now: SystemTime,
    policy: &BackoffPolicy,
    ramp: Option<&RampPolicy>,
) -> Admission {
    match state {
        None => Admission::Allow,
        Some(Window::Blocked {
            until,
            status,
            errno,
            probe_until,
        }) => {
            if let Ok(left) = until.duration_since(now)
                && !left.is_zero()
            {
                return deny(*status, *errno, left.min(policy.max_window));
            }
            if probe_until.is_some_and(|lease| now < lease) {
                return deny(*status, *errno, Duration::ZERO);
            }
            *probe_until = Some(now.checked_add(policy.probe_lease).unwrap_or(now));
            Admission::Probe
        }
        Some(Window::Ramp {
            start,
            second,
            admitted,
        }) => {
            let elapsed = now.duration_since(*start).unwrap_or(Duration::ZERO);
            let Some(rate) = ramp.and_then(|r| r.rate_at(elapsed)) else {
                *state = None;
                return Admission::Allow;
            };
            if elapsed.as_secs() != *second {
                *second = elapsed.as_secs();
                *admitted = 0;
            }
            if *admitted < rate {
                *admitted += 1;
                Admission::Allow
            } else {
                deny(StatusCode::SERVICE_UNAVAILABLE, RAMP_ERRNO, Duration::ZERO)
            }
        }
    }
}

/// Opens or extends a window to `until`; an open window is never shortened.
pub(super) fn block(state: &mut Option<Window>, until: SystemTime, status: StatusCode, errno: u16) {
    if let Some(Window::Blocked { until: current, .. }) = state
        && *current >= until
    {
        return;
    }
    *state = Some(Window::Blocked {
        until,
        status,
        errno,
        probe_until: None,
    });
}

/// An answer that opened no window for this scope: closes a half-open window (into the ramp
/// when `ramp` is given). Ignored while the window is still open: a straggler that left before
/// the window opened proves nothing about now.
pub(super) fn succeed(state: &mut Option<Window>, now: SystemTime, ramp: Option<&RampPolicy>) {
    if let Some(Window::Blocked { until, .. }) = state
        && now >= *until
    {
        *state = ramp.map(|_| Window::Ramp {
            start: now,
            second: 0,
            admitted: 0,
        });
    }
}

/// The probe's request will never report (it did not reach the upstream): let the next caller
/// probe now rather than after the lease.
pub(super) fn release_probe(state: &mut Option<Window>) {
    if let Some(Window::Blocked { probe_until, .. }) = state {
        *probe_until = None;
    }
}

/// Whether a probe lease is live: the probe's request is still out.
pub(super) fn probe_held(state: &Option<Window>, now: SystemTime) -> bool {
    matches!(state, Some(Window::Blocked { until, probe_until: Some(lease), .. })
        if now >= *until && now < *lease)
}

/// Another replica holds the fleet's probe until `until`: no probe here before then. The
/// answer for this request is the half-open denial (`Retry-After: 1`).
pub(super) fn lease_elsewhere(state: &mut Option<Window>, until: SystemTime) -> Option<Denial> {
    match state {
        Some(Window::Blocked {
            status,
            errno,
            probe_until,
            ..
        }) => {
            *probe_until = Some(until);
            match deny(*status, *errno, Duration::ZERO) {
                Admission::Deny(d) => Some(d),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The ramp's current second (since the probe succeeded) and the rate admitted in it.
pub(super) fn ramp_slot(
    state: &Option<Window>,
    now: SystemTime,
    ramp: Option<&RampPolicy>,
) -> Option<(u64, u32)> {
    let Some(Window::Ramp { start, .. }) = state else {
        return None;
    };
    let elapsed = now.duration_since(*start).unwrap_or(Duration::ZERO);
    Some((elapsed.as_secs(), ramp?.rate_at(elapsed)?))
}

/// Starts (or restarts) the ramp at `start` (a window reopened by another replica's probe).
pub(super) fn start_ramp(state: &mut Option<Window>, start: SystemTime, now: SystemTime) {
    let second = now
        .duration_since(start)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    *state = Some(Window::Ramp {
        start,
        second,
        admitted: 0,
    });
}

/// Whether dropping this state changes nothing worth keeping (bounded maps evict these first).
pub(super) fn is_idle(state: &Window, now: SystemTime) -> bool {
    match state {
        Window::Blocked {
            until, probe_until, ..
        } => now >= *until && !probe_until.is_some_and(|lease| now < lease),
        Window::Ramp { .. } => true,
    }
}

/// When the window stops denying (for choosing which live window a full map evicts).
pub(super) fn ends_at(state: &Window) -> SystemTime {
    match state {
        Window::Blocked { until, .. } => *until,
        Window::Ramp { start, .. } => *start,
    }
}

pub(super) fn info(
    state: &Window,
    now: SystemTime,
    ramp: Option<&RampPolicy>,
) -> Option<WindowInfo> {
    match state {
        Window::Blocked {
            until,
            status,
            errno,
            probe_until,
        } => {
            let remaining = until.duration_since(now).unwrap_or(Duration::ZERO);
            Some(WindowInfo {
                remaining,
                status: *status,
                errno: *errno,
                half_open: remaining.is_zero(),
                probe_in_flight: remaining.is_zero()
                    && probe_until.is_some_and(|lease| now < lease),
                ramp_percent: None,
            })
        }
        Window::Ramp { start, .. } => {
            let elapsed = now.duration_since(*start).unwrap_or(Duration::ZERO);
            let percent = ramp?.percent_at(elapsed)?;
            Some(WindowInfo {
                remaining: Duration::ZERO,
                status: StatusCode::SERVICE_UNAVAILABLE,
                errno: RAMP_ERRNO,
                half_open: false,
                probe_in_flight: false,
                ramp_percent: Some(percent),
            })
        }
    }
}

fn deny(status: StatusCode, errno: u16, left: Duration) -> Admission {
    Admission::Deny(Denial {
        status,
        errno,
        retry_after_secs: whole_seconds_up(left),
    })
}

// === impl RampPolicy ===

impl RampPolicy {
    /// Percent of the base rate admitted `elapsed` after the probe succeeded; `None` once the
    /// ramp is over. Steps rise linearly from `start_percent` (first step) to 100 (last step).
    pub fn percent_at(&self, elapsed: Duration) -> Option<u8> {
        if elapsed >= self.period || self.steps == 0 {
            return None;
        }
        let steps = u128::from(self.steps);
        let step = (elapsed.as_nanos() * steps / self.period.as_nanos().max(1)).min(steps - 1);
        let start = u128::from(self.start_percent.min(100));
        let percent = if steps == 1 {
            start
        } else {
            start + (100 - start) * step / (steps - 1)
        };
        u8::try_from(percent).ok()
    }

    /// Requests admitted per second `elapsed` after the probe succeeded (at least 1).
    pub fn rate_at(&self, elapsed: Duration) -> Option<u32> {
        let percent = u64::from(self.percent_at(elapsed)?);
        let rate = (u64::from(self.base_rate_per_sec) * percent).div_ceil(100);
        Some(u32::try_from(rate).unwrap_or(u32::MAX).max(1))
    }
}
