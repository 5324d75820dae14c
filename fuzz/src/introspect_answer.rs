//! `/v1/introspect` answers from the OAuth server: parsed leniently, then judged for a bearer
//! route (activity, token type, expiry on the gateway's clock, scopes, identity headers).
//! Input: a flags byte (which scope the endpoint needs), then the answer body.

use fxa_gateway::auth::bearer;
use fxa_gateway::auth::introspect::parse_answer;

const REQUIRED: [&[&str]; 4] = [
    &[],
    &["profile:email"],
    &["https://identity.mozilla.com/apps/oldsync"],
    &["profile:write", "profile:email:write"],
];

pub fn run(data: &[u8]) {
    let Some((&flags, body)) = data.split_first() else {
        return;
    };
    let Ok(info) = parse_answer(body) else {
        return;
    };
    if !info.active {
        assert!(info.sub.is_none() && info.client_id.is_none() && info.scope.is_empty());
    }
    let now = crate::now();
    let required = REQUIRED[usize::from(flags & 3)];
    match bearer::accept(&info, required, flags & 4 != 0, now) {
        Ok(outcome) => {
            assert!(bearer::usable(&info, now));
            assert!(info.exp.is_none_or(|exp| exp > now));
            let refresh = info.token_type.as_deref().map(str::to_ascii_lowercase);
            assert!(refresh.as_deref() != Some("refresh_token"));
            for (name, _) in &outcome.upstream_headers {
                assert!(name.as_str().starts_with("x-fxa-"));
            }
        }
        Err(_) => {}
    }
}
