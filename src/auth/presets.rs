//! Endpoint presets: what a `bearer` route fronting an FxA service requires of each request,
//! so operators need not copy FxA's scope tables into the config.
//!
//! [`requirement`] maps (preset, method, path) to a [`Requirement`]. The path is the request
//! path after the route's prefix, starting at the version segment (`/v1/email`); a query
//! (`?…`) is ignored. Matching is exact and case-sensitive, like FxA's Hapi router: a trailing
//! slash, an empty or extra segment, or an unlisted method is an unknown endpoint, and every
//! unknown endpoint is [`Requirement::Forbidden`] (403), so a preset only ever opens what is
//! listed below. `HEAD` is treated as `GET` (Hapi serves `HEAD` from `GET` routes). CORS
//! preflights are the caller's business ([`is_cors_preflight`]); any other `OPTIONS` is
//! forbidden. Never decides anything from a token; pure, no I/O.
//!
//! A scope listed here is satisfied by any granted scope that implies it (FxA semantics,
//! [`super::scope`]), so `profile` satisfies every `profile:*` read scope.
//!
//! **`profile`** (reference §3.2)
//!
//! | method | path | requirement |
//! |---|---|---|
//! | GET | `/v1/profile` | any valid token (the server filters fields by scope) |
//! | GET | `/v1/email` | `profile:email` or `email` (OIDC synonym the server accepts) |
//! | GET | `/v1/subscriptions` | `profile:subscriptions` or `profile:email` (code vs docs) |
//! | GET | `/v1/uid` | `profile:uid` |
//! | GET | `/v1/avatar` | `profile:avatar` |
//! | POST | `/v1/avatar/upload` | `profile:avatar:write` |
//! | DELETE | `/v1/avatar`, `/v1/avatar/<32 hex>` | `profile:avatar:write` |
//! | GET | `/v1/display_name` | `profile:display_name` |
//! | POST | `/v1/display_name` | `profile:display_name:write` |
//! | GET | `/v1/ecosystem_anon_id` | `profile:ecosystem_anon_id` (route UNCONFIRMED, kept) |
//! | POST | `/v1/ecosystem_anon_id` | `profile:ecosystem_anon_id:write` (route UNCONFIRMED, kept) |
//! | GET | `/v1/avatar/<monogram>` | public (default avatar SVG) |
//! | any | `/v1/_core_profile`, `/v1/cache/…`, `/__heartbeat__`, anything else | forbidden |
//!
//! A monogram segment is one character: a single ASCII letter, digit or RFC 3986 `pchar`
//! punctuation other than `.` and `%`, or a percent-encoded single non-ASCII, non-control
//! character (the first character of a display name or email). The server draws `[a-zA-Z0-9]`
//! and `?` for anything else. Internal endpoints are never reachable through a preset.
//!
//! **`tokenserver`** (reference §5.1)
//!
//! | method | path | requirement |
//! |---|---|---|
//! | GET | `/1.0/sync/1.5` | `https://identity.mozilla.com/apps/oldsync` |
//! | any | anything else | forbidden (only `sync/1.5` is in use) |
//!
//! **`oauth`** (reference §7, "Relying Parties should only use OAuth API endpoints", the
//! swagger tag's exact list; §1.9 for the credentials)
//!
//! | method | path | requirement | why |
//! |---|---|---|---|
//! | GET | `/v1/authorization` | public | browser redirect, no credential |
//! | POST | `/v1/authorization` | public | identity `assertion`/session in the body or Hawk, not an OAuth token |
//! | POST | `/v1/authorized-clients` | public | identity `assertion` in the body |
//! | POST | `/v1/authorized-clients/destroy` | public | identity `assertion` in the body |
//! | GET | `/v1/client/<16 hex>` | public | client metadata, no credential |
//! | POST | `/v1/destroy` | public | token in the body |
//! | POST | `/v1/introspect` | public | token in the body |
//! | GET | `/v1/jwks` | public | public keys |
//! | POST | `/v1/key-data` | public | identity `assertion` in the body |
//! | POST | `/v1/token` | public | code/refresh token/client secret in the body |
//! | POST | `/v1/verify` | public | token in the body |
//! | any | anything else | forbidden | RPs may only use the OAuth API endpoints |
//!
//! None of the OAuth endpoints takes an OAuth *access token* as a bearer credential: those that
//! authenticate the user do it with an FxA identity assertion or session token, which
//! introspection would reject. Demanding a bearer access token there would break every client,
//! so the whole list is public at the gateway and the OAuth server checks the body credentials.

#[cfg(test)]
mod tests;

use http::header::ACCESS_CONTROL_REQUEST_METHOD;
use http::{HeaderMap, Method};
use serde::Deserialize;

use super::scope::ScopeSet;

/// The scope the token server requires (reference §5.1).
pub const OLDSYNC_SCOPE: &str = "https://identity.mozilla.com/apps/oldsync";

/// An FxA service a route can front.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
pub enum Preset {
    /// The profile server (`profile.accounts.firefox.com`).
    #[serde(rename = "profile")]
    Profile,
    /// The Sync token server (`token.services.mozilla.com`).
    #[serde(rename = "tokenserver")]
    TokenServer,
    /// The OAuth endpoints RPs may use (`oauth.accounts.firefox.com`).
    #[serde(rename = "oauth")]
    OAuth,
}

/// What one endpoint of a preset requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requirement {
    /// No token needed; the upstream checks whatever credential the request carries.
    Public,
    /// A valid access token, whatever its scope.
    AnyValidToken,
    /// A valid access token with a scope implying one of these.
    AnyOf(&'static [&'static str]),
    /// Not an endpoint this preset exposes: 403.
    Forbidden,
}

const EMAIL: &[&str] = &["profile:email", "email"];
const SUBSCRIPTIONS: &[&str] = &["profile:subscriptions", "profile:email"];
const UID: &[&str] = &["profile:uid"];
const AVATAR: &[&str] = &["profile:avatar"];
const AVATAR_WRITE: &[&str] = &["profile:avatar:write"];
const DISPLAY_NAME: &[&str] = &["profile:display_name"];
const DISPLAY_NAME_WRITE: &[&str] = &["profile:display_name:write"];
const ECOSYSTEM_ANON_ID: &[&str] = &["profile:ecosystem_anon_id"];
const ECOSYSTEM_ANON_ID_WRITE: &[&str] = &["profile:ecosystem_anon_id:write"];
const OLDSYNC: &[&str] = &[OLDSYNC_SCOPE];

/// Deepest path any preset endpoint has, in segments.
const MAX_SEGMENTS: usize = 3;

/// The methods presets distinguish; `HEAD` is `GET`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verb {
    Get,
    Post,
    Delete,
    Other,
}

// === impl Preset ===

impl Preset {
    /// The name used in `gateway.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Profile => "profile",
            Preset::TokenServer => "tokenserver",
            Preset::OAuth => "oauth",
        }
    }
}

// === impl Requirement ===

impl Requirement {
    /// Whether the request must carry a valid access token.
    pub fn needs_token(self) -> bool {
        matches!(self, Requirement::AnyValidToken | Requirement::AnyOf(_))
    }

    /// The scopes of which one is required (empty unless [`Requirement::AnyOf`]), for the
    /// `scope` attribute of an `insufficient_scope` challenge.
    pub fn scopes(self) -> &'static [&'static str] {
        match self {
            Requirement::AnyOf(scopes) => scopes,
            _ => &[],
        }
    }

    /// Whether a valid token granted `granted` may make the request.
    pub fn is_satisfied_by(self, granted: &ScopeSet) -> bool {
        match self {
            Requirement::Public | Requirement::AnyValidToken => true,
            Requirement::AnyOf(scopes) => scopes.iter().any(|s| granted.implies_str(s)),
            Requirement::Forbidden => false,
        }
    }
}

/// What `preset` requires of `method path` (`path` after the route prefix, e.g. `/v1/email`).
pub fn requirement(preset: Preset, method: &Method, path: &str) -> Requirement {
    let path = path.split_once('?').map_or(path, |(path, _query)| path);
    let mut segments = [""; MAX_SEGMENTS];
    let Some(count) = split_segments(path, &mut segments) else {
        return Requirement::Forbidden;
    };
    let segments = &segments[..count];
    let verb = match *method {
        Method::GET | Method::HEAD => Verb::Get,
        Method::POST => Verb::Post,
        Method::DELETE => Verb::Delete,
        _ => Verb::Other,
    };
    match preset {
        Preset::Profile => profile(verb, segments),
        Preset::TokenServer => token_server(verb, segments),
        Preset::OAuth => oauth(verb, segments),
    }
}

/// A CORS preflight (`OPTIONS` with `Access-Control-Request-Method`), which the caller lets
/// through without a token.
pub fn is_cors_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
}

/// Splits `/a/b/c` into its segments; `None` if it does not start with `/` or is too deep.
/// Empty segments are kept, so `//x` and `/x/` match nothing.
fn split_segments<'a>(path: &'a str, out: &mut [&'a str; MAX_SEGMENTS]) -> Option<usize> {
    let rest = path.strip_prefix('/')?;
    let mut count = 0;
    for segment in rest.split('/') {
        *out.get_mut(count)? = segment;
        count += 1;
    }
    Some(count)
}

fn profile(verb: Verb, segments: &[&str]) -> Requirement {
    use Requirement::{AnyOf, AnyValidToken, Forbidden, Public};
    match (verb, segments) {
        (Verb::Get, ["v1", "profile"]) => AnyValidToken,
        (Verb::Get, ["v1", "email"]) => AnyOf(EMAIL),
        (Verb::Get, ["v1", "subscriptions"]) => AnyOf(SUBSCRIPTIONS),
        (Verb::Get, ["v1", "uid"]) => AnyOf(UID),
        (Verb::Get, ["v1", "avatar"]) => AnyOf(AVATAR),
        (Verb::Get, ["v1", "avatar", letter]) if is_monogram(letter) => Public,
        (Verb::Post, ["v1", "avatar", "upload"]) => AnyOf(AVATAR_WRITE),
        (Verb::Delete, ["v1", "avatar"]) => AnyOf(AVATAR_WRITE),
        (Verb::Delete, ["v1", "avatar", id]) if is_hex(id, 32) => AnyOf(AVATAR_WRITE),
        (Verb::Get, ["v1", "display_name"]) => AnyOf(DISPLAY_NAME),
        (Verb::Post, ["v1", "display_name"]) => AnyOf(DISPLAY_NAME_WRITE),
        (Verb::Get, ["v1", "ecosystem_anon_id"]) => AnyOf(ECOSYSTEM_ANON_ID),
        (Verb::Post, ["v1", "ecosystem_anon_id"]) => AnyOf(ECOSYSTEM_ANON_ID_WRITE),
        _ => Forbidden,
    }
}

fn token_server(verb: Verb, segments: &[&str]) -> Requirement {
    match (verb, segments) {
        (Verb::Get, ["1.0", "sync", "1.5"]) => Requirement::AnyOf(OLDSYNC),
        _ => Requirement::Forbidden,
    }
}

fn oauth(verb: Verb, segments: &[&str]) -> Requirement {
    match (verb, segments) {
        (Verb::Get | Verb::Post, ["v1", "authorization"])
        | (Verb::Post, ["v1", "authorized-clients"])
        | (Verb::Post, ["v1", "authorized-clients", "destroy"])
        | (
            Verb::Post,
            [
                "v1",
                "destroy" | "introspect" | "key-data" | "token" | "verify",
            ],
        )
        | (Verb::Get, ["v1", "jwks"]) => Requirement::Public,
        (Verb::Get, ["v1", "client", id]) if is_hex(id, 16) => Requirement::Public,
        _ => Requirement::Forbidden,
    }
}

fn is_hex(segment: &str, len: usize) -> bool {
    segment.len() == len && segment.bytes().all(|b| b.is_ascii_hexdigit())
}

/// One character, as the profile server puts it in a default-avatar URL (see module doc).
fn is_monogram(segment: &str) -> bool {
    match segment.as_bytes() {
        [b] => b.is_ascii_alphanumeric() || b"-_~!$&'()*+,;=:@".contains(b),
        [b'%', ..] => {
            percent_decode_one_char(segment).is_some_and(|c| !c.is_ascii() && !c.is_control())
        }
        _ => false,
    }
}

/// Decodes a segment made only of `%XX` triplets holding exactly one UTF-8 character.
fn percent_decode_one_char(segment: &str) -> Option<char> {
    let bytes = segment.as_bytes();
    if !bytes.len().is_multiple_of(3) || bytes.len() > 12 {
        return None;
    }
    let mut decoded = [0u8; 4];
    for (slot, triplet) in decoded.iter_mut().zip(bytes.chunks_exact(3)) {
        let [b'%', hi, lo] = *triplet else {
            return None;
        };
        let digit = |b: u8| char::from(b).to_digit(16);
        *slot = u8::try_from(digit(hi)? * 16 + digit(lo)?).ok()?;
    }
    let text = std::str::from_utf8(&decoded[..bytes.len() / 3]).ok()?;
    let mut chars = text.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}
