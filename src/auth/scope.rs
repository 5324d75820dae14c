//! FxA OAuth scopes: parsing scope strings from untrusted input and deciding implication with
//! FxA's semantics (reference §4.1–4.2, mozilla/fxa `lib/scopes.js`).
//!
//! A scope value is either a **short name** (`profile`, `profile:email:write`: `:`-separated
//! components of `[a-zA-Z0-9_]+`, a final `write` meaning write access, `write` alone invalid) or
//! a **URL** (`https://identity.mozilla.com/apps/oldsync#read`). Every value must also match the
//! RFC 6749 §3.3 class `[\x21\x23-\x5B\x5D-\x7E]+`. A value starting `https:` is a URL scope,
//! anything else a short name, as in FxA.
//!
//! Implication ("A implies B"):
//! - short: if B ends in `write`, A must too; then A's components (without `write`) are a prefix
//!   of B's (without `write`). So `profile:write` ⇒ `profile`, `profile:email:write`, but
//!   `profile:email:write` ⇏ `profile`.
//! - URL: same origin, A's path components a prefix of B's, and if A has a fragment B has the
//!   same one (`…/oldsync#read` ⇒ `…/oldsync/bookmarks#read`, ⇏ `…/oldsync/bookmarks`).
//! - a URL never implies a short name, nor the reverse.
//!
//! URL scopes are parsed by hand. FxA accepts a URL only if WHATWG parsing gives back the same
//! string (`href === value`); rather than carry a URL parser we accept a subset that certainly
//! round-trips and refuse the rest: `https://`, a lower-case DNS host (labels `[a-z0-9-]+`, the
//! last starting with a letter, so no IPv4/IPv6 forms), an optional port (digits, no leading
//! zero, not the default 443), no user info, no query (no `?` at all), a path of non-empty
//! components that are not `.`/`..` made of RFC 3986 `pchar`s without `%`, not ending in `/`,
//! and an optional fragment `#[a-zA-Z0-9_]+`. Because upper-case hosts are refused (FxA refuses
//! them too: WHATWG lower-cases the host, so `href` differs), origins compare as canonical
//! lower-case strings.
//!
//! **Bounds and invalid values.** A scope string longer than [`MAX_SCOPE_BYTES`] or with more
//! than [`MAX_SCOPE_VALUES`] values is an error, checked before any per-value work. Values are
//! separated by one or more ASCII spaces only (RFC 6749; FxA's `fromString`). For *granted* scopes
//! ([`ScopeSet::parse_granted`], e.g. an introspection answer) an invalid value is **dropped**:
//! dropping can only take privileges away, and one value our stricter URL rules refuse must not
//! make every other scope of the token useless. For scopes the operator writes
//! ([`ScopeSet::parse`], [`Scope::parse`]) an invalid value is an error, so typos fail at load.
//!
//! Pure logic, no I/O. Scope strings are not secrets, but error messages still quote at most
//! a bounded prefix of an invalid value.

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

/// Most bytes accepted in one scope string (FxA's own request validators cap it at 256).
pub const MAX_SCOPE_BYTES: usize = 4096;
/// Most values accepted in one scope string.
pub const MAX_SCOPE_VALUES: usize = 64;

/// Longest prefix of an invalid value quoted in a [`ScopeError`].
const QUOTED_PREFIX: usize = 80;

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope string is {len} bytes, over the limit of {MAX_SCOPE_BYTES}")]
    TooLong { len: usize },
    #[error("scope string has more than {MAX_SCOPE_VALUES} values")]
    TooMany,
    #[error("invalid scope value {0:?}")]
    Invalid(String),
}

/// One validated scope value.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Scope {
    value: Box<str>,
    kind: Kind,
}

/// A set of validated scope values, as granted to a token or required by a route.
///
/// Keeps the values in the order given, without exact duplicates; values implied by others are
/// kept too, so `Display` gives back what was granted.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

/// Where the parts of a validated value lie, as byte offsets into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// `value[..base_len]` is the value without a trailing `:write`.
    Short { base_len: usize, write: bool },
    /// `value[..origin_len]` is `https://host[:port]`, `value[origin_len..path_end]` the path
    /// (starting `/`), and `value[path_end..]` the fragment with its `#`, or empty.
    Url { origin_len: usize, path_end: usize },
}

/// How a scope string is split and what happens to invalid values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Invalid {
    Reject,
    Drop,
}

// === impl Scope ===

impl Scope {
    /// Parses one scope value; anything that FxA would refuse (or that we cannot be sure it
    /// accepts, see the module doc) is an error.
    pub fn parse(value: &str) -> Result<Scope, ScopeError> {
        if value.len() > MAX_SCOPE_BYTES {
            return Err(ScopeError::TooLong { len: value.len() });
        }
        let kind = classify(value).ok_or_else(|| invalid(value))?;
        Ok(Scope {
            value: value.into(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.value
    }

    /// Whether this is a URL scope (`https://…`) rather than a short name.
    pub fn is_url(&self) -> bool {
        matches!(self.kind, Kind::Url { .. })
    }

    /// Whether holding `self` grants `other` (reference §4.2). Reflexive.
    pub fn implies(&self, other: &Scope) -> bool {
        implies((&self.value, self.kind), (&other.value, other.kind))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scope({:?})", &*self.value)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<Scope, ScopeError> {
        Scope::parse(s)
    }
}

// === impl ScopeSet ===

impl ScopeSet {
    /// Parses a space-separated scope string, refusing it if any value is invalid. For scopes
    /// the operator writes (config); see [`ScopeSet::parse_granted`] for a token's scopes.
    pub fn parse(scopes: &str) -> Result<ScopeSet, ScopeError> {
        ScopeSet::parse_with(scopes, Invalid::Reject)
    }

    /// Parses the space-separated scope string granted to a token (introspection `scope`),
    /// dropping invalid values. Still an error when over the size or count bounds.
    pub fn parse_granted(scopes: &str) -> Result<ScopeSet, ScopeError> {
        ScopeSet::parse_with(scopes, Invalid::Drop)
    }

    /// Like [`ScopeSet::parse_granted`] for scopes that arrive as a list (e.g. `/v1/verify`'s
    /// `scope` array): same bounds, counting one separator between values.
    pub fn from_granted_values<'a, I>(values: I) -> Result<ScopeSet, ScopeError>
    where
        I: IntoIterator<Item = &'a str>,
    {
        let mut set = ScopeSet::default();
        let (mut count, mut len) = (0usize, 0usize);
        for value in values {
            count += 1;
            len += value.len() + usize::from(count > 1);
            if len > MAX_SCOPE_BYTES {
                return Err(ScopeError::TooLong { len });
            }
            if count > MAX_SCOPE_VALUES {
                return Err(ScopeError::TooMany);
            }
            set.push(value, Invalid::Drop)?;
        }
        Ok(set)
    }

    fn parse_with(scopes: &str, on_invalid: Invalid) -> Result<ScopeSet, ScopeError> {
        if scopes.len() > MAX_SCOPE_BYTES {
            return Err(ScopeError::TooLong { len: scopes.len() });
        }
        let mut set = ScopeSet::default();
        for (count, value) in scopes.split(' ').filter(|v| !v.is_empty()).enumerate() {
            if count >= MAX_SCOPE_VALUES {
                return Err(ScopeError::TooMany);
            }
            set.push(value, on_invalid)?;
        }
        Ok(set)
    }

    fn push(&mut self, value: &str, on_invalid: Invalid) -> Result<(), ScopeError> {
        match classify(value) {
            Some(kind) => {
                if !self.scopes.iter().any(|s| &*s.value == value) {
                    self.scopes.push(Scope {
                        value: value.into(),
                        kind,
                    });
                }
                Ok(())
            }
            None if on_invalid == Invalid::Drop => Ok(()),
            None => Err(invalid(value)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Scope> {
        self.scopes.iter()
    }

    /// Whether some scope in the set implies `required`.
    pub fn implies(&self, required: &Scope) -> bool {
        self.scopes.iter().any(|held| held.implies(required))
    }

    /// Whether some scope in the set implies the scope value `required`, without allocating.
    /// An invalid `required` value is implied by nothing.
    pub fn implies_str(&self, required: &str) -> bool {
        let Some(kind) = classify(required) else {
            return false;
        };
        self.scopes
            .iter()
            .any(|held| implies((&held.value, held.kind), (required, kind)))
    }

    /// Whether every scope in `required` is implied by some scope in the set (FxA's
    /// `contains`). True for an empty `required`.
    pub fn implies_all<'a, I>(&self, required: I) -> bool
    where
        I: IntoIterator<Item = &'a Scope>,
    {
        required.into_iter().all(|r| self.implies(r))
    }
}

impl<'a> IntoIterator for &'a ScopeSet {
    type Item = &'a Scope;
    type IntoIter = std::slice::Iter<'a, Scope>;

    fn into_iter(self) -> Self::IntoIter {
        self.scopes.iter()
    }
}

impl fmt::Display for ScopeSet {
    /// The values joined by single spaces; parsing the result gives an equal set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, scope) in self.scopes.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(&scope.value)?;
        }
        Ok(())
    }
}

impl fmt::Debug for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.scopes.iter()).finish()
    }
}

impl FromStr for ScopeSet {
    type Err = ScopeError;

    fn from_str(s: &str) -> Result<ScopeSet, ScopeError> {
        ScopeSet::parse(s)
    }
}

// === parsing ===

fn invalid(value: &str) -> ScopeError {
    let mut end = value.len().min(QUOTED_PREFIX);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    ScopeError::Invalid(value[..end].to_owned())
}

/// Validates one value and locates its parts; `None` if FxA would refuse it (or might).
fn classify(value: &str) -> Option<Kind> {
    // RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E.
    let scope_char = |b: u8| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E);
    if value.is_empty() || !value.bytes().all(scope_char) {
        return None;
    }
    if value.starts_with("https:") {
        classify_url(value)
    } else {
        classify_short(value)
    }
}

fn classify_short(value: &str) -> Option<Kind> {
    let name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let components_ok = value
        .split(':')
        .all(|c| !c.is_empty() && c.bytes().all(name_char));
    if !components_ok {
        return None;
    }
    match value.strip_suffix(":write") {
        Some(base) => Some(Kind::Short {
            base_len: base.len(),
            write: true,
        }),
        // `write` alone names no resource.
        None if value == "write" => None,
        None => Some(Kind::Short {
            base_len: value.len(),
            write: false,
        }),
    }
}

fn classify_url(value: &str) -> Option<Kind> {
    const SCHEME: &str = "https://";
    let rest = value.strip_prefix(SCHEME)?;
    // The authority ends at the path; a `?` or `#` first would mean an empty path ("/" after
    // WHATWG parsing), which ends in `/` and is refused.
    let authority_len = rest.find(['/', '?', '#'])?;
    if rest.as_bytes()[authority_len] != b'/' || !valid_authority(&rest[..authority_len]) {
        return None;
    }
    let origin_len = SCHEME.len() + authority_len;
    let after = &value[origin_len..];
    let (path, fragment) = after.split_at(after.find('#').unwrap_or(after.len()));
    if !valid_path(path) || !valid_fragment(fragment) {
        return None;
    }
    Some(Kind::Url {
        origin_len,
        path_end: origin_len + path.len(),
    })
}

/// `host[:port]`, no user info, in the form WHATWG serialises unchanged.
fn valid_authority(authority: &str) -> bool {
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'))
    };
    // A last label starting with a digit would be parsed as an IPv4 address and rewritten.
    let host_ok = host.split('.').all(label_ok)
        && host
            .rsplit('.')
            .next()
            .and_then(|last| last.bytes().next())
            .is_some_and(|b| b.is_ascii_lowercase());
    let port_ok = match port {
        None => true,
        // WHATWG drops an empty port, leading zeros and the scheme's default port.
        Some(p) => {
            (1..=5).contains(&p.len())
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p == "0" || !p.starts_with('0'))
                && p.parse::<u32>().is_ok_and(|n| n <= 65535 && n != 443)
        }
    };
    host_ok && port_ok
}

/// A non-empty path not ending in `/`, of components WHATWG leaves alone: no empty component
/// (`//x` would resolve as another host when FxA builds parent URLs), no dot segments, no
/// percent-encoding, and only RFC 3986 `pchar`s.
fn valid_path(path: &str) -> bool {
    let pchar = |b: u8| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b);
    let Some(components) = path.strip_prefix('/') else {
        return false;
    };
    components
        .split('/')
        .all(|c| !c.is_empty() && c != "." && c != ".." && c.bytes().all(pchar))
}

/// Empty (no fragment) or `#[a-zA-Z0-9_]+`.
fn valid_fragment(fragment: &str) -> bool {
    match fragment.strip_prefix('#') {
        None => fragment.is_empty(),
        Some(name) => {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        }
    }
}

// === implication ===

/// Whether the held value implies the required one; both already classified.
fn implies((held, held_kind): (&str, Kind), (required, required_kind): (&str, Kind)) -> bool {
    match (held_kind, required_kind) {
        (
            Kind::Short {
                base_len: h_base,
                write: h_write,
            },
            Kind::Short {
                base_len: r_base,
                write: r_write,
            },
        ) => {
            // Only a write scope implies a write scope.
            (h_write || !r_write) && component_prefix(&held[..h_base], &required[..r_base], b':')
        }
        (
            Kind::Url {
                origin_len: h_origin,
                path_end: h_path,
            },
            Kind::Url {
                origin_len: r_origin,
                path_end: r_path,
            },
        ) => {
            let h_fragment = &held[h_path..];
            held[..h_origin].eq_ignore_ascii_case(&required[..r_origin])
                && component_prefix(&held[h_origin..h_path], &required[r_origin..r_path], b'/')
                && (h_fragment.is_empty() || h_fragment == &required[r_path..])
        }
        _ => false,
    }
}

/// Whether `prefix`'s `sep`-separated components are a prefix of `whole`'s.
fn component_prefix(prefix: &str, whole: &str, sep: u8) -> bool {
    whole.starts_with(prefix)
        && (whole.len() == prefix.len() || whole.as_bytes()[prefix.len()] == sep)
}
