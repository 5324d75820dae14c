//! fxa-gateway: a reverse proxy that enforces the Mozilla accounts (FxA) platform rules in
//! front of relying parties. `main.rs` only parses flags; everything else lives here so tests
//! and benches drive the same code.

pub mod admin;
pub mod auth;
pub mod backoff;
pub mod body;
pub mod certs;
pub mod clock;
pub mod config;
pub mod conn_io;
pub mod errno;
#[doc(hidden)]
pub mod fuzzing;
pub mod gates;
pub mod gateway;
pub mod headers;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod ratelimit;
pub mod reload;
pub mod request_id;
pub mod respond;
pub mod rewrite;
pub mod routing;
pub mod shared;
pub mod tls;
pub mod upstream;

pub use gateway::{Gateway, ShutdownHandle};

/// Installs aws-lc-rs as the process-wide rustls provider (idempotent). Configs are still built
/// with an explicit provider; this only guards code paths that use the process default.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
