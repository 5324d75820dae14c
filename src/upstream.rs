//! Upstream clients: one pooled hyper-util client per configured upstream, over rustls with the
//! webpki roots and/or the upstream's own CA, HTTP/2 when the upstream offers it by ALPN.
//!
//! Every call is bounded: a per-upstream cap on requests in flight (the legacy client only caps
//! idle connections), a connect timeout and a timeout to the response head. An idempotent
//! request whose connection dies before any response byte is retried once.

use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::body::UpstreamBody;
use crate::config::UpstreamConfig;
use crate::errno::GatewayError;

pub type HttpClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// One upstream service and its connection pool.
pub struct Upstream {
    pub name: String,
    scheme: Scheme,
    authority: Authority,
    /// Base path without a trailing '/' ("" for the root).
    base_path: String,
    client: HttpClient,
    permits: Arc<Semaphore>,
    connect_timeout: Duration,
    response_timeout: Duration,
}

/// What an upstream call failed with, before the pipeline turns it into an errno answer.
#[derive(Debug)]
pub enum CallError {
    Gateway(GatewayError),
    /// The request body failed (e.g. over the size cap); the pipeline decides what to answer.
    RequestBody,
}

impl Upstream {
    pub fn new(config: &UpstreamConfig) -> anyhow::Result<Upstream> {
        let scheme = config.url.scheme().cloned().unwrap_or(Scheme::HTTPS);
        let authority = config
            .url
            .authority()
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("upstream {} has no host", config.name))?;
        let base_path = config.url.path().trim_end_matches('/').to_owned();
        Ok(Upstream {
            name: config.name.clone(),
            scheme,
            authority,
            base_path,
            client: build_client(config)?,
            permits: Arc::new(Semaphore::new(config.max_connections)),
            connect_timeout: config.connect_timeout,
            response_timeout: config.response_timeout,
        })
    }

    /// The upstream URI for a request path (already stripped of the route prefix if asked).
    pub fn uri_for(&self, path: &str, query: Option<&str>) -> Result<Uri, GatewayError> {
        let mut pq = String::with_capacity(
            self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1) + 1,
        );
        pq.push_str(&self.base_path);
        if !path.starts_with('/') {
            pq.push('/');
        }
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let pq = PathAndQuery::try_from(pq)
            .map_err(|_| GatewayError::BadRequest("invalid request target"))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(pq)
            .build()
            .map_err(|_| GatewayError::BadRequest("invalid request target"))
    }

    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Root URI of the upstream, for health checks.
    pub fn base_uri(&self) -> Result<Uri, GatewayError> {
        self.uri_for("/", None)
    }

    /// Waits (up to the connect timeout) for a free connection slot.
    pub async fn acquire(&self) -> Result<OwnedSemaphorePermit, GatewayError> {
        if let Ok(p) = self.permits.clone().try_acquire_owned() {
            return Ok(p);
        }
        match tokio::time::timeout(self.connect_timeout, self.permits.clone().acquire_owned()).await
        {
            Ok(Ok(p)) => Ok(p),
            _ => Err(GatewayError::UpstreamBusy {
                upstream: self.name.clone(),
            }),
        }
    }

    /// Sends a request and waits for the response head, within the response timeout.
    pub async fn send(
        &self,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, CallError> {
        // The downstream may be h2; the client picks the upstream's version from ALPN.
        *req.version_mut() = Version::HTTP_11;
        let replay = replayable(&req);
        match self.send_once(req).await {
            Err(Failure::BeforeResponse(cause)) if replay.is_some() => {
                tracing::debug!(upstream = %self.name, %cause, "retrying idempotent request on a fresh connection");
                let req = replay
                    .map(ReplayParts::into_request)
                    .ok_or(CallError::RequestBody)?;
                self.send_once(req).await.map_err(|f| self.classify(f))
            }
            other => other.map_err(|f| self.classify(f)),
        }
    }

    async fn send_once(&self, req: Request<UpstreamBody>) -> Result<Response<Incoming>, Failure> {
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(Failure::Timeout),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) => Err(Failure::from_client_error(&e)),
        }
    }

    fn classify(&self, failure: Failure) -> CallError {
        let upstream = self.name.clone();
        CallError::Gateway(match failure {
            Failure::Timeout => GatewayError::UpstreamTimeout {
                upstream,
                after: self.response_timeout,
            },
            Failure::ConnectTimeout => GatewayError::UpstreamTimeout {
                upstream,
                after: self.connect_timeout,
            },
            Failure::Connect(cause) => GatewayError::UpstreamUnreachable { upstream, cause },
            Failure::BeforeResponse(cause) | Failure::Protocol(cause) => {
                GatewayError::UpstreamBadResponse { upstream, cause }
            }
            Failure::RequestBody => return CallError::RequestBody,
        })
    }
}

/// Why one attempt failed.
enum Failure {
    Timeout,
    ConnectTimeout,
    Connect(String),
    /// The connection closed or reset before any response byte: safe to retry if idempotent.
    BeforeResponse(String),
    Protocol(String),
    RequestBody,
}

impl Failure {
    fn from_client_error(e: &hyper_util::client::legacy::Error) -> Failure {
        let cause = error_chain(e);
        if e.is_connect() {
            return if find_io_kind(e) == Some(std::io::ErrorKind::TimedOut) {
                Failure::ConnectTimeout
            } else {
                Failure::Connect(cause)
            };
        }
        let mut source = std::error::Error::source(e);
        while let Some(err) = source {
            if err.is::<crate::body::BodyTooLarge>() {
                return Failure::RequestBody;
            }
            if let Some(h) = err.downcast_ref::<hyper::Error>() {
                if h.is_user() {
                    return Failure::RequestBody;
                }
                if h.is_incomplete_message() || h.is_canceled() {
                    return Failure::BeforeResponse(cause);
                }
            }
            source = err.source();
        }
        match find_io_kind(e) {
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                Failure::BeforeResponse(cause)
            }
            _ => Failure::Protocol(cause),
        }
    }
}

fn find_io_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        out.push_str(": ");
        out.push_str(&err.to_string());
        source = err.source();
    }
    out
}

/// What is kept to replay an idempotent, body-less request once.
struct ReplayParts {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Option<bytes::Bytes>,
}

impl ReplayParts {
    fn into_request(self) -> Request<UpstreamBody> {
        let mut req = Request::new(match self.body {
            Some(b) => UpstreamBody::Full(Some(b)),
            None => UpstreamBody::Empty,
        });
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.headers_mut() = self.headers;
        req
    }
}

fn replayable(req: &Request<UpstreamBody>) -> Option<ReplayParts> {
    let idempotent = matches!(
        *req.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    );
    let body = match req.body() {
        UpstreamBody::Empty => None,
        UpstreamBody::Full(b) => b.clone(),
        UpstreamBody::Stream(_) => return None,
    };
    idempotent.then(|| ReplayParts {
        method: req.method().clone(),
        uri: req.uri().clone(),
        headers: req.headers().clone(),
        body,
    })
}

fn build_client(config: &UpstreamConfig) -> anyhow::Result<HttpClient> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let tls = crate::tls::client_config(config.ca_pem.as_deref(), config.ca_only)?;
    let builder = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if config.http2 && config.url.scheme() == Some(&Scheme::HTTPS) {
        builder.enable_all_versions().wrap_connector(http)
    } else {
        builder.enable_http1().wrap_connector(http)
    };
    let client = Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.max_connections)
        .set_host(true)
        .build(connector);
    Ok(client)
}
