//! `Authorization` values (one field per input line): the bearer scheme as bearer routes read
//! it, the canonical `Bearer <token>` form that goes upstream, and the `JWT` scheme as
//! `amo-jwt-verify` routes read it (see also `amo_jwt`).

use fxa_gateway::auth::scheme;
use http::header::AUTHORIZATION;

pub fn run(data: &[u8]) {
    let mut headers = crate::fields(AUTHORIZATION, data);
    let read = scheme::bearer_token(&headers).map(str::to_owned);
    if let Ok(token) = &read {
        assert!(!token.is_empty() && token.len() <= 4096);
        assert!(token.bytes().all(scheme::is_token68));
        assert_eq!(headers.get_all(AUTHORIZATION).iter().count(), 1);
        let value = scheme::bearer_value(token).expect("a token68 token is a header value");
        assert_eq!(value.as_bytes(), format!("Bearer {token}").as_bytes());
    }
    scheme::canonicalize(&mut headers);
    // Canonical form changes the scheme's spelling and nothing else.
    match (&read, scheme::bearer_token(&headers)) {
        (Ok(before), Ok(after)) => {
            assert_eq!(before, after);
            let sent = headers.get(AUTHORIZATION).unwrap().as_bytes();
            assert_eq!(sent, format!("Bearer {before}").as_bytes());
        }
        (Err(_), Err(_)) => {}
        (before, after) => panic!("canonicalize changed the verdict: {before:?} -> {after:?}"),
    }
    crate::amo_jwt::verify_headers(&headers);
}
