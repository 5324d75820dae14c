//! One `POST /v1/token` with `grant_type=refresh_token` (`fxa-reference.md` §1.2): the OAuth
//! upstream's back-off windows first, the call, then its bookkeeping. Never logs the refresh
//! token, the new access token or the client secret.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::answer::{NewToken, TokenAnswer, judge};
use super::{Grant, RefreshError, TokenKey};
use crate::auth::form_post;
use crate::auth::introspect::Introspector;
use crate::backoff::{
    Admission, BackoffGate, Caller, Gate as _, Scope, UpstreamAnswer, clamp_retry_after, classify,
    parse_retry_after, whole_seconds_up,
};
use crate::clock::SharedClock;
use crate::config::{Secret, TokenEndpoint};
use crate::upstream::Upstream;

/// What a call asked for, and when.
struct Asked {
    scope: Option<String>,
    users: Vec<String>,
    at: SystemTime,
}

/// Everything one token endpoint call needs, owned by its spawned task.
pub(super) struct TokenCall {
    pub(super) upstream: Arc<Upstream>,
    pub(super) upstream_index: usize,
    pub(super) endpoint: TokenEndpoint,
    pub(super) client_id: String,
    pub(super) client_secret: Option<Secret>,
    pub(super) gate: Arc<BackoffGate>,
    pub(super) clock: SharedClock,
    pub(super) grace: Duration,
    pub(super) introspector: Option<Arc<Introspector>>,
}

// === impl TokenCall ===

impl TokenCall {
    /// One `POST /v1/token` with `grant_type=refresh_token`: back-off gate, the call, its
    /// bookkeeping. Logs no token and no secret.
    pub(super) async fn exchange(
        self: Arc<Self>,
        refresh_token: String,
        old: TokenKey,
        scope: Option<String>,
        users: Vec<String>,
    ) -> Result<Arc<Grant>, RefreshError> {
        let now = self.clock.now();
        let asked_at = now;
        let scopes = [
            Scope::Upstream(self.upstream_index),
            Scope::Client {
                upstream: self.upstream_index,
                client_id: &self.client_id,
            },
        ];
        let mut probes = Vec::new();
        for scope in scopes {
            match self.gate.admit(scope, now).await {
                Admission::Allow => {}
                Admission::Probe => probes.push(scope),
                Admission::Deny(denial) => {
                    for probe in probes {
                        self.gate.release_probe(probe, now);
                    }
                    return Err(RefreshError::Unavailable {
                        retry_after: Some(denial.retry_after_secs),
                    });
                }
            }
        }
        let form = self.form(&refresh_token, scope.as_deref());
        drop(refresh_token);
        let result = form_post::post(&self.upstream, self.endpoint.path(), form).await;
        let now = self.clock.now();
        let raw = match result {
            Ok(raw) => raw,
            Err(cause) => {
                for probe in probes {
                    self.gate.release_probe(probe, now);
                }
                tracing::warn!(upstream = %self.upstream.name, %cause, "refresh call failed");
                return Err(RefreshError::Unavailable { retry_after: None });
            }
        };
        let verdict = judge(raw.status, raw.body.as_deref());
        let errno = raw
            .body
            .as_deref()
            .filter(|_| !raw.status.is_success())
            .and_then(crate::errno::errno_in);
        let retry_after =
            parse_retry_after(raw.retry_after.as_ref().map(|v| v.as_bytes()), None, now);
        let caller = Caller {
            upstream: self.upstream_index,
            client_id: Some(&self.client_id),
            identity: None,
        };
        let answer = UpstreamAnswer {
            status: raw.status,
            errno,
            retry_after,
            backoff: None,
        };
        self.gate.record(&caller, &answer, now);
        match verdict {
            TokenAnswer::Granted(new) => {
                let asked = Asked {
                    scope,
                    users,
                    at: asked_at,
                };
                Ok(Arc::new(self.grant(new, old, asked, now)))
            }
            TokenAnswer::Reauth => {
                tracing::info!(
                    upstream = %self.upstream.name,
                    client_id = %self.client_id,
                    status = raw.status.as_u16(),
                    "refresh token rejected by the OAuth server: the user must re-authenticate"
                );
                Err(RefreshError::Reauth)
            }
            TokenAnswer::Misconfigured { errno } => {
                tracing::error!(
                    upstream = %self.upstream.name,
                    client_id = %self.client_id,
                    status = raw.status.as_u16(),
                    errno,
                    "the OAuth server refused the gateway's refresh request: check [refresh] client_id, client_secret, token_path and the routes' refresh_scope"
                );
                Err(RefreshError::Misconfigured {
                    status: raw.status.as_u16(),
                    errno,
                })
            }
            TokenAnswer::Unavailable => {
                tracing::warn!(upstream = %self.upstream.name, status = raw.status.as_u16(), "refresh answer unusable");
                // The wait the answer asked for, or the window it opened without one.
                let opened = classify(&answer, &caller, self.gate.policy()).map(|w| w.length);
                let retry_after = retry_after
                    .map(|w| clamp_retry_after(w, self.gate.policy().max_window))
                    .max(opened)
                    .map(whole_seconds_up);
                Err(RefreshError::Unavailable { retry_after })
            }
        }
    }

    /// The form body: client credentials in the body (never also in `Authorization`, which
    /// FxA refuses), no secret for a public client.
    fn form(&self, refresh_token: &str, scope: Option<&str>) -> String {
        let mut form = String::with_capacity(256);
        form_post::push_field(&mut form, "grant_type", "refresh_token");
        form_post::push_field(&mut form, "refresh_token", refresh_token);
        form_post::push_field(&mut form, "client_id", &self.client_id);
        if let Some(secret) = &self.client_secret {
            let secret = std::str::from_utf8(secret.expose()).unwrap_or_default();
            form_post::push_field(&mut form, "client_secret", secret);
        }
        if let Some(scope) = scope {
            form_post::push_field(&mut form, "scope", scope);
        }
        form
    }

    fn grant(&self, new: NewToken, old: TokenKey, asked: Asked, now: SystemTime) -> Grant {
        let expires_at = now.checked_add(new.expires_in).unwrap_or(now);
        let ttl = self.grace.min(new.expires_in);
        let Asked { scope, users, at } = asked;
        Grant {
            old,
            asked_scope: scope,
            asked_at: at,
            access_token: new.access_token,
            granted_scope: new.scope,
            expires_at,
            reuse_until: now.checked_add(ttl).unwrap_or(now),
            ttl,
            users,
        }
    }
}
