//! Step 4 of the pipeline, authenticate: applies the route's auth policy to a request and says
//! what credential goes upstream and who the caller is.
//!
//! Never forwards the caller's credentials on an `amo-jwt` route, never lets a caller pick a
//! signing credential the config did not grant to its listener or address, and never echoes a
//! token in an error.

use std::net::IpAddr;
use std::time::SystemTime;

use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};

use super::amo_jwt::{
    AmoCredential, AmoVerifier, AmoVerifierConfig, IssuerConfig, JwtRejection, MAX_LIFETIME,
    ReplayCache,
};
use std::sync::Arc;

use super::bearer::UID_HEADER;
use super::introspect::{IntrospectSettings, Introspector};
use super::jwks::Jwks;
use super::jwt_access::{JwtSettings, LocalVerifier};
use super::outcome::{AuthOutcome, Refreshed};
use super::refresh::{Grant, OldToken, RefreshError, Refresher};
use super::revocation::{LocalRevocations, Revocation, Revocations, SharedRevocations, UserCaches};
use super::scheme::{self, bearer_value};
use super::security_events::{
    JtiLedger, LocalJtiLedger, SecurityEvent, SetError, SetRejection, SetSettings, SetVerifier,
    SharedJtiLedger,
};
use super::tokens::TokenSource;
use crate::backoff::BackoffGate;
use crate::clock::SharedClock;
use crate::config::{AuthPolicy, BearerPolicy, Config, IpNet};
use crate::errno::GatewayError;
use crate::metrics::AuthMetrics;
use crate::shared::Store;
use crate::upstream::Upstream;

/// Caller header naming an `[[amo_credentials]]` entry to sign with.
pub const AMO_CREDENTIAL_HEADER: HeaderName = HeaderName::from_static("x-fxa-amo-credential");
/// Header carrying the verified AMO issuer to the upstream.
pub const AMO_ISSUER_HEADER: HeaderName = HeaderName::from_static("x-fxa-amo-issuer");

/// Auth state built once per configuration.
pub struct AuthRuntime {
    tokens: Option<TokenSource>,
    refresher: Option<Arc<Refresher>>,
    /// What security events revoke (kept across a reload; with `[redis]`, the fleet's).
    revocations: Arc<dyn Revocations>,
    /// This configuration's cached user state, which revocations from other replicas drop
    /// (the revocations hold it weakly).
    caches: Arc<RuntimeCaches>,
    metrics: AuthMetrics,
    /// FxA's JWK set (JWT access tokens, security events); its refresher task lives as long.
    jwks: Option<Arc<Jwks>>,
    events: Option<SetVerifier>,
    credentials: Vec<SigningCredential>,
    verifier: Option<AmoVerifier>,
    issuer_keys: Vec<String>,
}

/// The caches of one configuration that hold state about a user's tokens.
struct RuntimeCaches {
    introspector: Option<Arc<Introspector>>,
    jwt: Option<Arc<LocalVerifier>>,
    refresher: Option<Arc<Refresher>>,
}

impl UserCaches for RuntimeCaches {
    fn drop_user(&self, uid: &str, revocation: Revocation) {
        if let Some(introspector) = &self.introspector {
            introspector.invalidate_user(uid, revocation);
        }
        if let Some(jwt) = &self.jwt {
            jwt.invalidate_user(uid, revocation);
        }
        if let Some(refresher) = &self.refresher {
            refresher.invalidate_user(uid);
        }
    }
}

struct SigningCredential {
    name: String,
    credential: AmoCredential,
    listeners: Vec<String>,
    peers: Vec<IpNet>,
}

/// The access token an upstream answered 401 to, and whether the request can be sent again.
pub struct Rejected<'a> {
    pub old_token: &'a str,
    pub replay: bool,
}

/// The caller's refresh token and the route's refresh options, for one request.
pub struct RefreshRequest<'a> {
    pub refresh_token: &'a str,
    pub scope: Option<&'a str>,
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
        Self::carry_over(config, upstreams, gate, clock, None, None)
    }

    /// With `store`, refreshes are single-flight across the fleet and AMO `jti`s are
    /// remembered fleet-wide.
    pub fn with_store(
        config: &Config,
        upstreams: &[Arc<Upstream>],
        gate: &Arc<BackoffGate>,
        clock: &SharedClock,
        store: Option<Arc<Store>>,
    ) -> anyhow::Result<AuthRuntime> {
        Self::carry_over(config, upstreams, gate, clock, None, store)
    }

    /// [`AuthRuntime::new`] after a reload: keeps what still means the same thing in the
    /// runtime `previous` built from its config. The introspection cache while the OAuth server
    /// (name and URL) and `[bearer]` cache settings are equal; the revocations security events
    /// recorded while `[security_events]` remembers as many as long; the delivered SET `jti`s
    /// while the ledger's size is equal; refresh grants while the OAuth server, client id,
    /// token endpoint, cache size and grace are equal; the AMO replay cache while its size is
    /// equal. The JWK set is fetched again and locally verified JWTs are verified again. With
    /// `store` (`[redis]`, which a reload cannot change), the fleet's state is in Redis anyway.
    pub fn carry_over(
        config: &Config,
        upstreams: &[Arc<Upstream>],
        gate: &Arc<BackoffGate>,
        clock: &SharedClock,
        previous: Option<(&Config, &AuthRuntime)>,
        store: Option<Arc<Store>>,
    ) -> anyhow::Result<AuthRuntime> {
        let same_server = |old: &Config, old_index: usize, index: usize| match (
            old.upstreams.get(old_index),
            config.upstreams.get(index),
        ) {
            (Some(a), Some(b)) => a.name == b.name && a.url == b.url,
            _ => false,
        };
        let remembering = |c: &Config| {
            c.security_events
                .as_ref()
                .map_or((std::time::Duration::from_secs(24 * 3600), 100_000), |e| {
                    (e.remember, e.remember_size as usize)
                })
        };
        let remember = remembering(config);
        let metrics = previous.map_or_else(AuthMetrics::default, |(_, r)| r.metrics.clone());
        let revocations: Arc<dyn Revocations> = previous
            .and_then(|(old, runtime)| {
                (remembering(old) == remember).then(|| Arc::clone(&runtime.revocations))
            })
            .unwrap_or_else(|| match &store {
                Some(store) => SharedRevocations::new(
                    store.clone(),
                    clock.clone(),
                    remember.0,
                    remember.1,
                    metrics.clone(),
                ),
                None => Arc::new(LocalRevocations::new(remember.0, remember.1)),
            });
        let introspector = config.bearer.as_ref().and_then(|b| {
            let upstream = upstreams.get(b.oauth_upstream)?.clone();
            let settings = IntrospectSettings {
                max_ttl: b.cache_max_ttl,
                negative_ttl: b.negative_ttl,
                capacity: b.cache_size,
                breaker: b.breaker,
            };
            let kept = previous.and_then(|(old, runtime)| {
                let o = old.bearer.as_ref()?;
                let same = same_server(old, o.oauth_upstream, b.oauth_upstream)
                    && (o.cache_max_ttl, o.negative_ttl, o.cache_size)
                        == (b.cache_max_ttl, b.negative_ttl, b.cache_size);
                same.then_some(runtime.tokens.as_ref()?.introspector().as_ref())
            });
            let (index, gate, clock) = (b.oauth_upstream, gate.clone(), clock.clone());
            let introspector = match kept {
                Some(old) => Introspector::carry_over(old, upstream, index, gate, clock, settings),
                None => Introspector::new(upstream, index, gate, clock, settings),
            };
            Some(Arc::new(
                introspector.with_revocations(Arc::clone(&revocations)),
            ))
        });
        let jwks = Self::jwks(
            config,
            upstreams,
            gate,
            clock,
            introspector.is_some(),
            &metrics,
        );
        let local = jwks
            .as_ref()
            .filter(|_| config.jwt.local_verification)
            .map(|jwks| {
                let settings = JwtSettings {
                    issuer: config.jwt.issuer.clone(),
                    audience: config.jwt.audience.clone(),
                    revocation_window: config.jwt.revocation_window,
                    cache_size: config.jwt.cache_size,
                };
                Arc::new(
                    LocalVerifier::new(settings, Arc::clone(jwks), clock.clone())
                        .with_metrics(metrics.clone()),
                )
            });
        let events = match (&config.security_events, &jwks) {
            (Some(e), Some(jwks)) => {
                let capacity = e.jti_cache_size as usize;
                let ledger = previous
                    .and_then(|(old, runtime)| {
                        let same = old.security_events.as_ref()?.jti_cache_size == e.jti_cache_size;
                        let kept = runtime.events.as_ref()?.ledger();
                        same.then(|| Arc::clone(kept))
                    })
                    .unwrap_or_else(|| {
                        let local = LocalJtiLedger::new(capacity);
                        match &store {
                            Some(store) => {
                                let pending = webhook_timeout(config) + PENDING_MARGIN;
                                let shared = SharedJtiLedger::new(
                                    local,
                                    store.clone(),
                                    clock.clone(),
                                    pending,
                                );
                                shared as Arc<dyn JtiLedger>
                            }
                            None => local,
                        }
                    });
                Some(SetVerifier::new(
                    SetSettings {
                        client_id: e.client_id.clone(),
                        issuer: e.issuer.clone(),
                        leeway: e.leeway,
                        max_age: e.max_age,
                        jti_capacity: capacity,
                        revoke_on_profile_change: e.revoke_on_profile_change,
                        revoke_on_subscription_change: e.revoke_on_subscription_change,
                    },
                    Arc::clone(jwks),
                    clock.clone(),
                    ledger,
                ))
            }
            _ => None,
        };
        let refresher = config.refresh.as_ref().and_then(|r| {
            let upstream = upstreams.get(r.oauth_upstream)?.clone();
            let kept = previous.and_then(|(old, runtime)| {
                let o = old.refresh.as_ref()?;
                let same = same_server(old, o.oauth_upstream, r.oauth_upstream)
                    && (&o.client_id, o.token_endpoint, o.cache_size, o.grace)
                        == (&r.client_id, r.token_endpoint, r.cache_size, r.grace);
                same.then_some(runtime.refresher.as_ref()?)
            });
            let (gate, clock, introspector) = (gate.clone(), clock.clone(), introspector.clone());
            let refresher = match kept {
                Some(old) => Refresher::carry_over(old, r, upstream, gate, clock, introspector),
                None => Refresher::new(r, upstream, gate, clock, introspector),
            };
            Some(Arc::new(match &store {
                Some(store) => refresher.with_store(store.clone()),
                None => refresher,
            }))
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
            let kept = previous.and_then(|(old, runtime)| {
                let same = old.amo_verify.replay_cache_size == config.amo_verify.replay_cache_size;
                same.then_some(runtime.verifier.as_ref()?.replay_cache().clone())
            });
            let verifier = match (kept, &store) {
                (Some(replays), _) => AmoVerifier::with_replay_cache(settings, replays),
                (None, Some(store)) => {
                    let replays =
                        ReplayCache::new(settings.replay_capacity.max(1)).with_store(store.clone());
                    AmoVerifier::with_replay_cache(settings, replays)
                }
                (None, None) => AmoVerifier::new(settings),
            };
            Some(verifier.map_err(|e| anyhow::anyhow!("amo issuers: {e}"))?)
        };
        let issuer_keys = config
            .amo_issuers
            .iter()
            .map(|i| i.api_key.clone())
            .collect();
        let caches = Arc::new(RuntimeCaches {
            introspector: introspector.clone(),
            jwt: local.clone(),
            refresher: refresher.clone(),
        });
        let weak: std::sync::Weak<RuntimeCaches> = Arc::downgrade(&caches);
        revocations.attach(weak);
        let tokens = introspector.map(|introspector| {
            let revocations = Arc::clone(&revocations);
            TokenSource::new(introspector, local, revocations, clock.clone())
        });
        Ok(AuthRuntime {
            tokens,
            refresher,
            revocations,
            caches,
            metrics,
            jwks,
            events,
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
        refresh: Option<&RefreshRequest<'_>>,
    ) -> Result<AuthOutcome, GatewayError> {
        match policy {
            AuthPolicy::None => Ok(AuthOutcome::default()),
            AuthPolicy::SecurityEvents => self.security_event(headers).await,
            AuthPolicy::Bearer(bearer) => {
                let tokens = self.tokens()?;
                match (refresh, &self.refresher) {
                    (Some(refresh), Some(refresher)) => {
                        self.bearer_refreshing(bearer, headers, caller, now, refresh, refresher)
                            .await
                    }
                    _ => {
                        super::bearer::authenticate(
                            tokens,
                            bearer,
                            caller.method,
                            caller.path,
                            headers,
                            now,
                        )
                        .await
                    }
                }
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
                    ..AuthOutcome::default()
                })
            }
            AuthPolicy::AmoJwtVerify { issuers } => {
                let verifier = self
                    .verifier
                    .as_ref()
                    .ok_or(GatewayError::Misconfigured("no AMO issuers".into()))?;
                let verified = verifier.verify_headers(headers, now).await.map_err(
                    |rejection| match rejection {
                        JwtRejection::ReplayUnverifiable => GatewayError::SharedStateUnavailable {
                            state: "amo_replay",
                            retry_after: verifier.replay_cache().retry_after_secs(),
                        },
                        other => GatewayError::AmoJwtRejected(other),
                    },
                )?;
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
                    ..AuthOutcome::default()
                })
            }
        }
    }

    fn tokens(&self) -> Result<&TokenSource, GatewayError> {
        self.tokens
            .as_ref()
            .ok_or_else(|| GatewayError::Misconfigured("bearer route without [bearer]".into()))
    }

    /// The JWK set, when an OAuth upstream is known; fetched in the background from now on.
    fn jwks(
        config: &Config,
        upstreams: &[Arc<Upstream>],
        gate: &Arc<BackoffGate>,
        clock: &SharedClock,
        bearer: bool,
        metrics: &AuthMetrics,
    ) -> Option<Arc<Jwks>> {
        let used = (bearer && config.jwt.local_verification) || config.security_events.is_some();
        let index = config.jwt.oauth_upstream.filter(|_| used)?;
        let jwks = Arc::new(
            Jwks::new(
                upstreams.get(index)?.clone(),
                index,
                gate.clone(),
                clock.clone(),
                config.jwt.jwks_path.clone(),
                config.jwt.jwks_refetch_interval,
            )
            .with_metrics(metrics.clone()),
        );
        jwks.spawn_refresher();
        Some(jwks)
    }

    /// The JWK set, for health output and tests.
    pub fn jwks_handle(&self) -> Option<&Arc<Jwks>> {
        self.jwks.as_ref()
    }

    /// Forgets revocations no token can fall under any more.
    pub fn housekeeping(&self, now: SystemTime) {
        self.revocations.sweep(now);
    }

    /// The local-JWT and security-event series (one per process, kept across reloads).
    pub fn metrics(&self) -> &AuthMetrics {
        &self.metrics
    }

    /// A `security-events` route: the SET verified and its delivery claimed, and the user's
    /// cached tokens dropped before the RP hears of it.
    async fn security_event(&self, headers: &HeaderMap) -> Result<AuthOutcome, GatewayError> {
        let verifier = self.events.as_ref().ok_or_else(|| {
            GatewayError::Misconfigured("security-events route without [security_events]".into())
        })?;
        let verified = verifier.verify(headers).await;
        self.count_event(&verified);
        let accepted = verified.map_err(|e| match e {
            SetError::Rejected(r) => GatewayError::SecurityEventRejected(r),
            SetError::NoKeys => GatewayError::IntrospectionUnavailable {
                retry_after: Some(1),
            },
            SetError::LedgerFull => GatewayError::SecurityEventsBusy,
        })?;
        self.revoke(&accepted.event);
        let uid = HeaderValue::from_str(&accepted.event.uid).map_err(|_| {
            GatewayError::SecurityEventRejected(super::security_events::SetRejection::Subject)
        })?;
        Ok(AuthOutcome {
            upstream_headers: vec![(UID_HEADER, uid)],
            delivery: Some(accepted.ticket),
            ..AuthOutcome::default()
        })
    }

    /// Applies what a verified event revokes: recorded (with `[redis]`, for every replica,
    /// which drop the user's cached state when they hear of it) and this replica's cached
    /// state of the user dropped now.
    fn revoke(&self, event: &SecurityEvent) {
        let Some(revocation) = event.revocation else {
            tracing::info!(events = ?event.events, "security event verified; nothing to revoke");
            return;
        };
        tracing::info!(events = ?event.events, "security event verified; revoking the user's cached tokens");
        self.revocations.record(&event.uid, revocation);
        self.caches.drop_user(&event.uid, revocation);
        self.metrics.revocation_applied("local");
    }

    /// Counts a received SET by event type and outcome.
    fn count_event(&self, verified: &Result<super::security_events::Accepted, SetError>) {
        let outcome = match verified {
            Ok(accepted) => {
                for event in &accepted.event.events {
                    self.metrics.security_event(event_label(event), "accepted");
                }
                return;
            }
            Err(SetError::Rejected(SetRejection::AlreadyDelivered)) => "replayed",
            Err(SetError::Rejected(_)) => "refused",
            Err(SetError::NoKeys) => "unavailable",
            Err(SetError::LedgerFull) => "busy",
        };
        self.metrics.security_event("unknown", outcome);
    }

    /// The refresher, on a configuration with `[refresh]`.
    pub fn refresher(&self) -> Option<&Refresher> {
        self.refresher.as_deref()
    }

    /// A bearer route with a refresh token at hand: refresh before forwarding when the token
    /// is inactive or expired (FxA answers an expired token with `active: false`), or expires
    /// within the skew. An outage during a proactive refresh of a still-valid token is not an
    /// error: the old token goes upstream.
    async fn bearer_refreshing(
        &self,
        policy: &BearerPolicy,
        headers: &HeaderMap,
        caller: &Caller<'_>,
        now: SystemTime,
        refresh: &RefreshRequest<'_>,
        refresher: &Refresher,
    ) -> Result<AuthOutcome, GatewayError> {
        use super::bearer;
        let tokens = self.tokens()?;
        let Some(required) = bearer::required_scopes(policy, caller.method, caller.path, headers)?
        else {
            return Ok(AuthOutcome::default());
        };
        let token = scheme::bearer_token(headers)?;
        let info = bearer::describe(tokens, token).await?;
        let usable = bearer::usable(&info, now);
        let expiring = info
            .exp
            .is_some_and(|exp| exp <= now.checked_add(refresher.skew()).unwrap_or(now));
        if usable && !expiring {
            return bearer::accept(&info, &required, policy.identity_headers, now);
        }
        let old = OldToken {
            token,
            info: Some(&info),
        };
        let (result, source) = refresher
            .refresh(refresh.refresh_token, old, refresh.scope)
            .await;
        match result {
            Ok(grant) => {
                let mut outcome = self
                    .accept_new_token(policy, &required, &grant, now)
                    .await?;
                outcome.refreshed = Some(Refreshed { grant, source });
                Ok(outcome)
            }
            Err(RefreshError::Unavailable { .. }) if usable => {
                let mut outcome = bearer::accept(&info, &required, policy.identity_headers, now)?;
                outcome.refresh_deferred = true;
                Ok(outcome)
            }
            Err(e) => Err(refresh_error(e)),
        }
    }

    /// After the upstream answered 401 to `old_token`: refresh, and say what the replay sends
    /// (on a bearer route the new token passes the route's checks first). Without a replay
    /// only the grant is returned.
    pub async fn refresh_rejected(
        &self,
        policy: &AuthPolicy,
        headers: &HeaderMap,
        caller: &Caller<'_>,
        rejected: Rejected<'_>,
        refresh: &RefreshRequest<'_>,
        now: SystemTime,
    ) -> Result<AuthOutcome, GatewayError> {
        let Rejected { old_token, replay } = rejected;
        let refresher = self
            .refresher
            .as_ref()
            .ok_or_else(|| GatewayError::Misconfigured("refresh route without [refresh]".into()))?;
        let old = OldToken {
            token: old_token,
            info: None,
        };
        let (result, source) = refresher
            .refresh(refresh.refresh_token, old, refresh.scope)
            .await;
        let grant = result.map_err(refresh_error)?;
        let mut outcome = match policy {
            // Not replayed: the caller only needs the new token.
            _ if !replay => AuthOutcome::default(),
            AuthPolicy::Bearer(bearer) => {
                let required =
                    super::bearer::required_scopes(bearer, caller.method, caller.path, headers)?
                        .unwrap_or_default();
                self.accept_new_token(bearer, &required, &grant, now)
                    .await?
            }
            _ => AuthOutcome {
                authorization: Some(bearer_value(grant.access_token())?),
                ..AuthOutcome::default()
            },
        };
        outcome.refreshed = Some(Refreshed { grant, source });
        Ok(outcome)
    }

    /// The route's checks for a freshly minted token (its introspection is seeded when its
    /// user is known for sure, else asked), and the header that carries it upstream.
    async fn accept_new_token(
        &self,
        policy: &BearerPolicy,
        required: &[&str],
        grant: &Grant,
        now: SystemTime,
    ) -> Result<AuthOutcome, GatewayError> {
        let token = grant.access_token();
        let info = super::bearer::describe(self.tokens()?, token).await?;
        if let (Some(sub), Some(refresher)) = (info.sub.as_deref(), &self.refresher) {
            refresher.learn_user(token, sub).await;
        }
        let mut outcome = super::bearer::accept(&info, required, policy.identity_headers, now)?;
        outcome.authorization = Some(bearer_value(token)?);
        Ok(outcome)
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

/// How much longer than the webhook's response timeout a copy of a SET on another replica
/// waits for the first copy's delivery.
const PENDING_MARGIN: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest response timeout of the upstreams `security-events` routes forward to.
fn webhook_timeout(config: &Config) -> std::time::Duration {
    config
        .routes
        .iter()
        .filter(|r| matches!(r.auth, AuthPolicy::SecurityEvents))
        .filter_map(|r| config.upstreams.get(r.upstream))
        .map(|u| u.response_timeout)
        .max()
        .unwrap_or(std::time::Duration::from_secs(30))
}

/// A metric label for a security event type (a fixed set: never the URI from the token).
fn event_label(uri: &str) -> &'static str {
    use super::security_events::{
        DELETE_USER, PASSWORD_CHANGE, PROFILE_CHANGE, SUBSCRIPTION_STATE_CHANGE,
    };
    match uri {
        PASSWORD_CHANGE => "password_change",
        DELETE_USER => "delete_user",
        PROFILE_CHANGE => "profile_change",
        SUBSCRIPTION_STATE_CHANGE => "subscription_state_change",
        _ => "other",
    }
}

/// What a failed refresh answers.
fn refresh_error(e: RefreshError) -> GatewayError {
    match e {
        RefreshError::Reauth => GatewayError::ReauthRequired,
        RefreshError::Unavailable { retry_after } => {
            GatewayError::RefreshUnavailable { retry_after }
        }
        RefreshError::Misconfigured { status, errno } => {
            GatewayError::RefreshMisconfigured { status, errno }
        }
    }
}

/// Applies an outcome to the (already hygiene-checked) upstream request headers.
pub fn apply(outcome: AuthOutcome, policy: &AuthPolicy, headers: &mut HeaderMap) {
    if AuthRuntime::replaces_authorization(policy) {
        headers.remove(AUTHORIZATION);
    }
    match outcome.authorization {
        Some(value) => {
            headers.insert(AUTHORIZATION, value);
        }
        // The caller's token goes on as `Bearer <token>` whatever case the scheme came in.
        None if matches!(policy, AuthPolicy::Bearer(_)) => scheme::canonicalize(headers),
        None => {}
    }
    for (name, value) in outcome.upstream_headers {
        headers.insert(name, value);
    }
}
