//! What an auth policy decided for one request: the credential and headers that go upstream,
//! and who the caller is. Shared by the policies and the pipeline, so it depends on neither.

use std::sync::Arc;

use http::header::{HeaderName, HeaderValue};

use super::refresh::{Grant, Source};
use super::security_events::DeliveryTicket;

/// What the policy decided for one request.
#[derive(Debug, Default)]
pub struct AuthOutcome {
    /// Replaces the caller's `Authorization` upstream.
    pub authorization: Option<HeaderValue>,
    /// Extra headers for the upstream (after the caller's `X-FxA-*` ones are stripped).
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
    /// Who the caller is, for per-identity gates (`iss:<key>` for AMO issuers, `uid:<sub>` for
    /// bearer tokens).
    pub identity: Option<String>,
    /// The OAuth client the token was issued to (503 errno 202/204 windows are per client).
    pub client_id: Option<String>,
    /// The access token was refreshed before forwarding (it expired, expires soon, or is
    /// inactive): `authorization` carries the new one.
    pub refreshed: Option<Refreshed>,
    /// A proactive refresh failed for an outage and the still-valid old token is used.
    pub refresh_deferred: bool,
    /// A security event being delivered: settled with the upstream's answer (2xx: delivered).
    pub delivery: Option<DeliveryTicket>,
}

/// A refresh this request used.
#[derive(Debug, Clone)]
pub struct Refreshed {
    pub grant: Arc<Grant>,
    pub source: Source,
}
