//! `/v1/introspect` answers from the OAuth server: parsed leniently, then judged for a bearer
//! route (activity, token type, expiry on the gateway's clock, scopes, identity headers).
//! Input: a flags byte (which scope the endpoint needs), then the answer body.

use fxa_gateway::auth::bearer;
use fxa_gateway::auth::introspect::parse_answer;
use fxa_gateway::auth::scope::ScopeSet;

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
    let Ok(outcome) = bearer::accept(&info, required, flags & 4 != 0, now) else {
        return;
    };
    // Accepted: active, not expired on the gateway's clock, not a refresh token, and holding
    // one of the required scopes by FxA's rules.
    assert!(bearer::usable(&info, now));
    assert!(info.exp.is_none_or(|exp| exp > now));
    let kind = info.token_type.as_deref().map(str::to_ascii_lowercase);
    assert!(kind.as_deref() != Some("refresh_token"));
    if !required.is_empty() {
        let held = ScopeSet::parse_granted(&info.scope).expect("accepted scopes parse");
        assert!(required.iter().any(|r| held.implies_str(r)));
    }
    for (name, _) in &outcome.upstream_headers {
        assert!(name.as_str().starts_with("x-fxa-"));
    }
}
