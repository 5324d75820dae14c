//! `X-FxA-Refresh-Token` (one field per input line after a flags byte): refused on listeners
//! that do not take refresh tokens, and anything but one 64-hex token refused where they do.

use fxa_gateway::auth::refresh::{REFRESH_TOKEN_HEADER, caller_refresh_token};

pub fn run(data: &[u8]) {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let headers = crate::fields(REFRESH_TOKEN_HEADER, rest);
    let (accepted_here, wanted) = (flags & 1 != 0, flags & 2 != 0);
    match caller_refresh_token(&headers, accepted_here, wanted) {
        Ok(Some(token)) => {
            assert!(accepted_here && wanted);
            assert_eq!(token.len(), 64);
            assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(headers.get_all(REFRESH_TOKEN_HEADER).iter().count(), 1);
        }
        Ok(None) => assert!(headers.is_empty() || (accepted_here && !wanted)),
        Err(_) => assert!(!headers.is_empty()),
    }
}
