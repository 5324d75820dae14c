//! Step 4 of the pipeline, authenticate: applies the route's auth policy to a request and says
//! what credential goes upstream and who the caller is.
//!
//! Never forwards the caller's credentials on an `amo-jwt` route, never lets a caller pick a
//! signing credential the config did not grant to its listener or address, and never echoes a
//! token in an error.

use std::net::IpAddr;
use std::time::SystemTime;

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::amo_jwt::{AmoCredential, AmoVerifier, AmoVerifierConfig, IssuerConfig, MAX_LIFETIME};
use std::sync::Arc;

use super::introspect::{IntrospectSettings, Introspector};
use crate::backoff::BackoffGate;
use crate::clock::SharedClock;
use crate::config::{AuthPolicy, Config, IpNet};
use crate::errno::GatewayError;
use crate::upstream::Upstream;

/// Caller header naming an `[[amo_credentials]]` entry to sign with.
pub const AMO_CREDENTIAL_HEADER: HeaderName = HeaderName::from_static("x-fxa-amo-credential");
/// Header carrying the verified AMO issuer to the upstream.
pub const AMO_ISSUER_HEADER: HeaderName = HeaderName::from_static("x-fxa-amo-issuer");

/// Auth state built once per configuration.
pub struct AuthRuntime {
    introspector: Option<Introspector>,
    credentials: Vec<SigningCredential>,
    verifier: Option<AmoVerifier>,
    issuer_keys: Vec<String>,
}

struct SigningCredential {
    name: String,
    credential: AmoCredential,
    listeners: Vec<String>,
    peers: Vec<IpNet>,
}

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
}

/// The connection facts a policy may consult.
pub struct Caller<'a> {
    pub listener: &'a str,
    pub peer: IpAddr,
    pub method: &'a http::Method,
    /// Request path after the route prefix (`/v1/email`).
    pub path: &'a str,
}

impl AuthRuntime {
    pub fn new(
        config: &Config,
        upstreams: &[Arc<Upstream>],
        gate: &Arc<BackoffGate>,
        clock: &SharedClock,
    ) -> anyhow::Result<AuthRuntime> {
        let introspector = config.bearer.as_ref().and_then(|b| {
            let upstream = upstreams.get(b.oauth_upstream)?.clone();
            let settings = IntrospectSettings {
                max_ttl: b.cache_max_ttl,
                negative_ttl: b.negative_ttl,
                capacity: b.cache_size,
                breaker: b.breaker,
            };
            Some(Introspector::new(
                upstream,
                b.oauth_upstream,
                gate.clone(),
                clock.clone(),
                settings,
            ))
        });
        let credentials = config
            .amo_credentials
            .iter()
            .map(|c| {
                let credential = AmoCredential::new(
                    c.api_key.clone(),
                    &c.secret,
                    c.lifetime,
                    c.clock_offset_seconds,
                )
                .map_err(|e| anyhow::anyhow!("amo credential {}: {e}", c.name))?;
                Ok(SigningCredential {
                    name: c.name.clone(),
                    credential,
                    listeners: c.selectable_from_listeners.clone(),
                    peers: c.selectable_from_peers.clone(),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let verifier = if config.amo_issuers.is_empty() {
            None
        } else {
            let issuers = config
                .amo_issuers
                .iter()
                .map(|i| IssuerConfig {
                    key: i.api_key.clone(),
                    secret: i.secret.clone(),
                    require_jti: i.require_jti,
                })
                .collect();
            let settings = AmoVerifierConfig {
                issuers,
                leeway: config.amo_verify.leeway,
                max_lifetime: MAX_LIFETIME,
                replay_capacity: config.amo_verify.replay_cache_size,
            };
            Some(AmoVerifier::new(settings).map_err(|e| anyhow::anyhow!("amo issuers: {e}"))?)
        };
        let issuer_keys = config
            .amo_issuers
            .iter()
            .map(|i| i.api_key.clone())
            .collect();
        Ok(AuthRuntime {
            introspector,
            credentials,
            verifier,
            issuer_keys,
        })
    }

    /// Applies `policy` to a request's headers (read before header hygiene strips `X-FxA-*`).
    pub async fn authenticate(
        &self,
        policy: &AuthPolicy,
        headers: &HeaderMap,
        caller: &Caller<'_>,
        now: SystemTime,
    ) -> Result<AuthOutcome, GatewayError> {
        match policy {
            AuthPolicy::None => Ok(AuthOutcome::default()),
            AuthPolicy::Bearer(bearer) => {
                let introspector = self.introspector.as_ref().ok_or_else(|| {
                    GatewayError::Misconfigured("bearer route without [bearer]".into())
                })?;
                super::bearer::authenticate(
                    introspector,
                    bearer,
                    caller.method,
                    caller.path,
                    headers,
                    now,
                )
                .await
            }
            AuthPolicy::AmoJwt {
                credential,
                header_selection,
            } => {
                let chosen = self.select(*credential, *header_selection, headers, caller)?;
                let jwt = chosen
                    .credential
                    .mint(now)
                    .map_err(|_| GatewayError::Internal("minting an AMO JWT failed"))?;
                Ok(AuthOutcome {
                    authorization: Some(jwt.header_value()),
                    upstream_headers: Vec::new(),
                    identity: Some(format!("iss:{}", chosen.credential.key())),
                    client_id: None,
                })
            }
            AuthPolicy::AmoJwtVerify { issuers } => {
                let verifier = self
                    .verifier
                    .as_ref()
                    .ok_or(GatewayError::Misconfigured("no AMO issuers".into()))?;
                let verified = verifier
                    .verify_headers(headers, now)
                    .await
                    .map_err(GatewayError::AmoJwtRejected)?;
                let allowed = issuers
                    .iter()
                    .any(|&i| self.issuer_keys.get(i).is_some_and(|k| k == verified.key()));
                if !allowed {
                    return Err(GatewayError::AmoJwtRejected(
                        super::amo_jwt::JwtRejection::UnknownIssuer,
                    ));
                }
                let issuer = HeaderValue::from_str(verified.key())
                    .map_err(|_| GatewayError::Internal("issuer header"))?;
                Ok(AuthOutcome {
                    authorization: None,
                    upstream_headers: vec![(AMO_ISSUER_HEADER, issuer)],
                    identity: Some(format!("iss:{}", verified.key())),
                    client_id: None,
                })
            }
        }
    }

    /// The credential to sign with: the caller's pick where the config grants it, else the
    /// route's default.
    fn select(
        &self,
        default: Option<usize>,
        header_selection: bool,
        headers: &HeaderMap,
        caller: &Caller<'_>,
    ) -> Result<&SigningCredential, GatewayError> {
        let Some(requested) = headers.get(AMO_CREDENTIAL_HEADER) else {
            return default.and_then(|i| self.credentials.get(i)).ok_or(
                GatewayError::CredentialSelectionRefused(
                    "this route needs an X-FxA-Amo-Credential header",
                ),
            );
        };
        if !header_selection {
            return Err(GatewayError::CredentialSelectionRefused(
                "this route does not allow credential selection",
            ));
        }
        let name = requested
            .to_str()
            .map_err(|_| GatewayError::CredentialSelectionRefused("unknown credential"))?;
        let chosen = self.credentials.iter().find(|c| c.name == name).ok_or(
            GatewayError::CredentialSelectionRefused("unknown credential"),
        )?;
        let granted = chosen.listeners.iter().any(|l| l == caller.listener)
            || chosen.peers.iter().any(|net| net.contains(caller.peer));
        if !granted {
            return Err(GatewayError::CredentialSelectionRefused(
                "credential not granted to this caller",
            ));
        }
        Ok(chosen)
    }

    /// Whether the policy replaces the caller's `Authorization`.
    pub fn replaces_authorization(policy: &AuthPolicy) -> bool {
        matches!(policy, AuthPolicy::AmoJwt { .. })
    }
}

/// Applies an outcome to the (already hygiene-checked) upstream request headers.
pub fn apply(outcome: AuthOutcome, policy: &AuthPolicy, headers: &mut HeaderMap) {
    if AuthRuntime::replaces_authorization(policy) {
        headers.remove(AUTHORIZATION);
    }
    if let Some(value) = outcome.authorization {
        headers.insert(AUTHORIZATION, value);
    }
    for (name, value) in outcome.upstream_headers {
        headers.insert(name, value);
    }
}
