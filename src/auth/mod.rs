//! Route auth policies: who a request is from, and what credential goes upstream.
//!
//! Each policy is pure logic over header bytes and an injected time; the pipeline decides when
//! to call it. Nothing here logs or echoes a token, a JWT or a secret.

pub mod amo_jwt;
pub mod bearer;
pub mod form_post;
pub mod introspect;
pub mod jose;
pub mod jwks;
pub mod jwt_access;
pub mod outcome;
pub mod policy;
pub mod presets;
pub mod refresh;
pub mod revocation;
pub mod scheme;
pub mod scope;
pub mod security_events;
pub mod tokens;
pub mod ttl;
