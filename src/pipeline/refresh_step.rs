//! Step 7 of the pipeline, refresh (DESIGN.md), as the pipeline sees it: reading the caller's
//! refresh token, how much of a body to keep for a replay, refreshing and replaying after an
//! upstream 401, and handing the new token back. The refresh itself (single flight,
//! grace period, seeding) is `auth::refresh`.
//!
//! A request is replayed at most once, and only with a body the gateway holds whole.

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri};
use tokio::sync::OwnedSemaphorePermit;

use super::{ConnInfo, Snapshot, State, send};
use crate::auth::outcome::{AuthOutcome, Refreshed};
use crate::auth::policy::{self, Caller, RefreshRequest, Rejected};
use crate::auth::refresh;
use crate::auth::{bearer, scheme};
use crate::body::{ResponseBody, UpstreamBody};
use crate::config::RouteConfig;
use crate::errno::GatewayError;
use crate::upstream::Upstream;

/// A refreshing route's request that came with a refresh token.
pub(super) struct RefreshContext {
    refresh_token: String,
    scope: Option<String>,
    /// The caller's bearer token: the one an upstream 401 is about.
    sent_token: Option<String>,
    /// The path after the route prefix, to check a new token against the same endpoint.
    rest_path: String,
}

/// The route-level context every refresh step needs.
pub(super) struct Step<'a> {
    pub state: &'a State,
    pub snapshot: &'a Snapshot,
    pub route: &'a RouteConfig,
    pub route_index: usize,
    pub conn: &'a ConnInfo,
}

/// A request kept whole so it can be sent again with a new token.
pub(super) struct Replay {
    uri: Uri,
    headers: HeaderMap,
    body: Option<Bytes>,
}

/// What refresh did, told to the caller with the new token.
#[derive(Debug, Clone, Copy)]
enum Note {
    /// Sent once, with the new token (refreshed before forwarding).
    Refreshed,
    /// Sent again with the new token after a 401.
    Replayed,
    /// The 401 is returned: the body could not be sent again.
    NotReplayed,
}

/// The new token and how it was used, for the response headers.
pub(super) struct Handover {
    refreshed: Refreshed,
    note: Note,
}

/// What the 401 step leaves for the response stage.
pub(super) struct AfterUnauthorized {
    pub response: Response<ResponseBody>,
    pub permit: OwnedSemaphorePermit,
    pub handover: Option<Handover>,
}

// === impl RefreshContext ===

impl RefreshContext {
    /// The caller's refresh token where the route refreshes. Refused (400) on a listener that
    /// does not take refresh tokens, on every route; ignored (and stripped) elsewhere.
    pub(super) fn from_request(
        headers: &HeaderMap,
        conn: &ConnInfo,
        route: &RouteConfig,
        rest_path: &str,
    ) -> Result<Option<RefreshContext>, GatewayError> {
        let token = refresh::caller_refresh_token(
            headers,
            conn.accept_refresh_token,
            route.refresh.is_some(),
        )?;
        let (Some(refresh_token), Some(options)) = (token, &route.refresh) else {
            return Ok(None);
        };
        Ok(Some(RefreshContext {
            refresh_token,
            scope: options.scope.clone(),
            sent_token: scheme::bearer_token(headers).ok().map(str::to_owned),
            rest_path: rest_path.to_owned(),
        }))
    }

    fn request(&self) -> RefreshRequest<'_> {
        RefreshRequest {
            refresh_token: &self.refresh_token,
            scope: self.scope.as_deref(),
        }
    }
}

// === impl Step ===

impl Step<'_> {
    /// The route's auth policy, refreshing first where the caller's token is expired,
    /// expiring or inactive and a refresh token came with it.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        caller: &Caller<'_>,
        now: SystemTime,
        refresh: Option<&RefreshContext>,
    ) -> Result<AuthOutcome, GatewayError> {
        let request = refresh.map(RefreshContext::request);
        let auth = self
            .snapshot
            .auth
            .authenticate(&self.route.auth, headers, caller, now, request.as_ref())
            .await
            .inspect_err(|e| self.note_error(e))?;
        if let Some(r) = &auth.refreshed {
            self.note_refresh(r.source.into());
        } else if auth.refresh_deferred {
            self.note_refresh("unavailable");
        }
        Ok(auth)
    }

    /// Largest body kept for a replay on this configuration.
    pub(super) fn replay_max(&self, limit: u64) -> Option<u64> {
        let refresher = self.snapshot.auth.refresher()?;
        Some(refresher.max_replay_body().min(limit))
    }

    /// The upstream answered 401 to the caller's token: refresh, and send the request again
    /// with the new token when its body is held whole; otherwise return the 401 with the new
    /// token so the caller can retry.
    pub(super) async fn after_unauthorized(
        &self,
        ctx: &RefreshContext,
        method: &Method,
        replay: Option<Replay>,
        response: Response<ResponseBody>,
        permit: OwnedSemaphorePermit,
        upstream: &Upstream,
    ) -> Result<AfterUnauthorized, GatewayError> {
        let Some(old_token) = ctx.sent_token.as_deref() else {
            // No bearer token went upstream: the 401 is not about one.
            return Ok(AfterUnauthorized {
                response,
                permit,
                handover: None,
            });
        };
        let Some(replay) = replay else {
            let new = self.refresh_rejected(ctx, method, old_token, None).await?;
            self.note_replay("not_replayed");
            return Ok(AfterUnauthorized {
                response,
                permit,
                handover: new.refreshed.map(|refreshed| Handover {
                    refreshed,
                    note: Note::NotReplayed,
                }),
            });
        };
        // The refused answer is not the caller's: let its connection slot go.
        drop(response);
        drop(permit);
        let new = self
            .refresh_rejected(ctx, method, old_token, Some(&replay.headers))
            .await?;
        let refreshed = new.refreshed.clone();
        let again = replay.into_request(method, new, &self.route.auth);
        let permit = upstream.acquire().await?;
        let limit = self.snapshot.limits.max_body_bytes;
        let response = send(upstream, again, &None, limit).await?;
        self.note_replay("replayed");
        Ok(AfterUnauthorized {
            response,
            permit,
            handover: refreshed.map(|refreshed| Handover {
                refreshed,
                note: Note::Replayed,
            }),
        })
    }

    /// Refreshes after a 401; with the replay's headers, the new token also passes the
    /// route's checks for the same endpoint.
    async fn refresh_rejected(
        &self,
        ctx: &RefreshContext,
        method: &Method,
        old_token: &str,
        replay_headers: Option<&HeaderMap>,
    ) -> Result<AuthOutcome, GatewayError> {
        let caller = Caller {
            listener: &self.conn.listener,
            peer: self.conn.peer.ip(),
            method,
            path: &ctx.rest_path,
        };
        let empty = HeaderMap::new();
        let rejected = Rejected {
            old_token,
            replay: replay_headers.is_some(),
        };
        let new = self
            .snapshot
            .auth
            .refresh_rejected(
                &self.route.auth,
                replay_headers.unwrap_or(&empty),
                &caller,
                rejected,
                &ctx.request(),
                self.state.clock.now(),
            )
            .await
            .inspect_err(|e| self.note_error(e))?;
        if let Some(r) = &new.refreshed {
            self.note_refresh(r.source.into());
        }
        Ok(new)
    }

    fn note_refresh(&self, outcome: &'static str) {
        if let Some(name) = self.snapshot.route_names.get(self.route_index) {
            self.state.metrics.refresh(name, outcome);
        }
    }

    fn note_replay(&self, outcome: &'static str) {
        if let Some(name) = self.snapshot.route_names.get(self.route_index) {
            self.state.metrics.replay(name, outcome);
        }
    }

    /// Counts a refresh that ended the request.
    fn note_error(&self, e: &GatewayError) {
        match e {
            GatewayError::ReauthRequired => self.note_refresh("reauth"),
            GatewayError::RefreshMisconfigured { .. } => self.note_refresh("misconfigured"),
            GatewayError::RefreshUnavailable { .. } => self.note_refresh("unavailable"),
            _ => {}
        }
    }
}

// === impl Replay ===

impl Replay {
    /// Keeps what a replay needs when the body is held whole (or there is none).
    pub(super) fn keep(parts: &http::request::Parts, body: &UpstreamBody) -> Option<Replay> {
        let body = match body {
            UpstreamBody::Empty => None,
            UpstreamBody::Full(bytes) => bytes.clone(),
            UpstreamBody::Stream(_) => return None,
        };
        Some(Replay {
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
            body,
        })
    }

    /// The same request with the new credential (and, on a bearer route, the new token's
    /// identity headers instead of the old one's).
    fn into_request(
        self,
        method: &Method,
        auth: AuthOutcome,
        policy: &crate::config::AuthPolicy,
    ) -> Request<UpstreamBody> {
        let mut headers = self.headers;
        for name in [
            bearer::UID_HEADER,
            bearer::CLIENT_ID_HEADER,
            bearer::SCOPE_HEADER,
        ] {
            headers.remove(name);
        }
        policy::apply(auth, policy, &mut headers);
        let mut again = Request::new(match self.body {
            Some(bytes) => UpstreamBody::Full(Some(bytes)),
            None => UpstreamBody::Empty,
        });
        *again.method_mut() = method.clone();
        *again.uri_mut() = self.uri;
        *again.headers_mut() = headers;
        again
    }
}

// === impl Handover ===

impl Handover {
    /// When authentication already refreshed the token, the request goes out with the new one.
    pub(super) fn before_forwarding(auth: &AuthOutcome) -> Option<Handover> {
        auth.refreshed.clone().map(|refreshed| Handover {
            refreshed,
            note: Note::Refreshed,
        })
    }

    /// Gives the caller its new access token: it must store it, and nobody may cache it.
    pub(super) fn apply(&self, headers: &mut HeaderMap, now: SystemTime) {
        let grant = &self.refreshed.grant;
        let Ok(mut token) = HeaderValue::from_str(grant.access_token()) else {
            return;
        };
        token.set_sensitive(true);
        headers.insert(refresh::ACCESS_TOKEN_HEADER, token);
        headers.insert(
            refresh::EXPIRES_IN_HEADER,
            HeaderValue::from(grant.expires_in(now)),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            refresh::REFRESH_HEADER,
            HeaderValue::from_static(match self.note {
                Note::Refreshed => "refreshed",
                Note::Replayed => "replayed",
                Note::NotReplayed => "not-replayed",
            }),
        );
    }
}
