//! The token endpoint's answer to a refresh grant: two bytes of status, then the body. A
//! granted token must be safe to hand back in `X-FxA-Access-Token` and to forward as
//! `Authorization: Bearer`.

use fxa_gateway::auth::refresh::{TokenAnswer, judge};
use fxa_gateway::auth::scheme;
use http::{HeaderValue, StatusCode};

pub fn run(data: &[u8]) {
    let [hi, lo, body @ ..] = data else {
        return;
    };
    let Ok(status) = StatusCode::from_u16(100 + u16::from_be_bytes([*hi, *lo]) % 500) else {
        return;
    };
    let body = (!body.is_empty() || hi & 0x80 == 0).then_some(body);
    match judge(status, body) {
        TokenAnswer::Granted(token) => {
            assert!(status.is_success());
            assert!(!token.access_token.is_empty() && token.access_token.len() <= 4096);
            assert!(HeaderValue::from_str(&token.access_token).is_ok());
            assert!(scheme::bearer_value(&token.access_token).is_ok());
            assert!(token.expires_in >= std::time::Duration::from_secs(1));
        }
        TokenAnswer::Reauth => assert!(matches!(status.as_u16(), 400 | 401)),
        // Outages (408, 429, 5xx) are never blamed on the configuration.
        TokenAnswer::Misconfigured { .. } => {
            assert!(!status.is_success() && !status.is_server_error());
            assert!(!matches!(status.as_u16(), 408 | 429));
        }
        TokenAnswer::Unavailable => {}
    }
}
