//! One `POST /v1/introspect` (RFC 7662 §2.1): a form body with the token and
//! `token_type_hint=access_token`. Never logs the token or the request body.

use crate::auth::form_post::{self, NoAnswer, RawAnswer};
use crate::upstream::Upstream;

pub(super) const INTROSPECT_PATH: &str = "/v1/introspect";

pub(super) async fn post(upstream: &Upstream, token: &str) -> Result<RawAnswer, NoAnswer> {
    let mut form = String::with_capacity(token.len() + 48);
    form_post::push_field(&mut form, "token", token);
    form_post::push_field(&mut form, "token_type_hint", "access_token");
    form_post::post(upstream, INTROSPECT_PATH, form).await
}
