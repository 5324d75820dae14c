use proptest::prelude::*;

use super::*;

const OLDSYNC: &str = "https://identity.mozilla.com/apps/oldsync";

fn set(s: &str) -> ScopeSet {
    ScopeSet::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

/// FxA's `ScopeSet.fromString(a).contains(fromString(b))`.
fn contains(held: &str, required: &str) -> bool {
    set(held).implies_all(&set(required))
}

fn assert_implies(held: &str, required: &str) {
    assert!(
        contains(held, required),
        "{held:?} should imply {required:?}"
    );
}

fn assert_not_implies(held: &str, required: &str) {
    assert!(
        !contains(held, required),
        "{held:?} should not imply {required:?}"
    );
}

// === published vectors (reference §4.2: fxa docs oauth-details.md and lib/scopes.js tests) ===

#[test]
fn published_valid_implications_hold() {
    let vectors = [
        ("profile:write", "profile"),
        ("profile", "profile:email"),
        ("profile:write", "profile:email"),
        ("profile:write", "profile:email:write"),
        ("profile:email:write", "profile:email"),
        ("profile profile:email:write", "profile:email"),
        ("profile profile:email:write", "profile:display_name"),
        (OLDSYNC, "https://identity.mozilla.com/apps/oldsync#read"),
        (
            OLDSYNC,
            "https://identity.mozilla.com/apps/oldsync/bookmarks",
        ),
        (
            OLDSYNC,
            "https://identity.mozilla.com/apps/oldsync/bookmarks#read",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync#read",
            "https://identity.mozilla.com/apps/oldsync/bookmarks#read",
        ),
    ];
    for (held, required) in vectors {
        assert_implies(held, required);
    }
}

#[test]
fn published_invalid_implications_do_not_hold() {
    let vectors = [
        ("profile:email:write", "profile"),
        ("profile:email:write", "profile:write"),
        ("profile:email", "profile:display_name"),
        ("profilebogey", "profile"),
        ("https", OLDSYNC),
        (
            "https://identity.mozilla.com/apps/oldsync#read",
            "https://identity.mozilla.com/apps/oldsync/bookmarks",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync#write",
            "https://identity.mozilla.com/apps/oldsync/bookmarks#read",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync/bookmarks",
            OLDSYNC,
        ),
        ("https://identity.mozilla.com/apps/oldsyncer", OLDSYNC),
        (OLDSYNC, "https://identity.mozilla.com/apps/oldsyncer"),
        ("https://identity.mozilla.org/apps/oldsync", OLDSYNC),
    ];
    for (held, required) in vectors {
        assert_not_implies(held, required);
    }
}

// === PyFxA `scope_matches` vectors (reference §4.3) ===

#[test]
fn pyfxa_valid_matches_hold() {
    let vectors = [
        ("profile:write", "profile"),
        ("profile", "profile:email"),
        ("profile:write", "profile:email"),
        ("profile:write", "profile:email:write"),
        ("profile:email:write", "profile:email"),
        ("profile profile:email:write", "profile:email"),
        ("profile profile:email:write", "profile:display_name"),
        (
            "profile https://identity.mozilla.com/apps/oldsync",
            "profile",
        ),
        ("foo bar:baz", "foo:dee"),
        ("foo bar:baz", "bar:baz"),
        ("foo bar:baz", "foo:mah:pa bar:baz:quux"),
        ("profile https://identity.mozilla.com/apps/oldsync", OLDSYNC),
        (OLDSYNC, "https://identity.mozilla.com/apps/oldsync#read"),
        (
            OLDSYNC,
            "https://identity.mozilla.com/apps/oldsync/bookmarks",
        ),
        (
            OLDSYNC,
            "https://identity.mozilla.com/apps/oldsync/bookmarks#read",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync#read",
            "https://identity.mozilla.com/apps/oldsync/bookmarks#read",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync#read profile",
            "https://identity.mozilla.com/apps/oldsync/bookmarks#read",
        ),
        // PyFxA's unit tests of the list semantics.
        ("abc def", "abc"),
        ("abc", "abc:xyz"),
        ("abc def", "abc:xyz def"),
        ("abc def", "abc:xyz def:123"),
        ("abc", ""),
    ];
    for (held, required) in vectors {
        assert_implies(held, required);
    }
}

#[test]
fn pyfxa_invalid_matches_do_not_hold() {
    let vectors = [
        ("profile:email:write", "profile"),
        ("profile:email:write", "profile:write"),
        ("profile:email", "profile:display_name"),
        ("profilebogey", "profile"),
        ("foo bar:baz", "bar"),
        ("profile:write", OLDSYNC),
        ("profile profile:email:write", "profile:write"),
        ("https", OLDSYNC),
        (OLDSYNC, "profile"),
        ("abc", "abc def"),
        ("abc:xyz", "abc:123"),
        ("abc:xyz", "abc:xyz abc:123"),
        ("abc:xyz", "abc"),
        ("abc:xyz def", "abc def"),
    ];
    for (held, required) in vectors {
        assert_not_implies(held, required);
    }
}

/// PyFxA (and fxa's own JS tests) spell the required side `identity.mozila.com`, so these only
/// show that a different origin is never implied. They are kept verbatim, and each is repeated
/// with the intended origin so the rule it was meant to test is tested too.
#[test]
fn pyfxa_typo_vectors_fail_verbatim_and_with_the_intended_origin() {
    let vectors = [
        (
            "https://identity.mozilla.com/apps/oldsync#read",
            "https://identity.mozila.com/apps/oldsync/bookmarks",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync#write",
            "https://identity.mozila.com/apps/oldsync/bookmarks#read",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync/bookmarks",
            "https://identity.mozila.com/apps/oldsync",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync/bookmarks",
            "https://identity.mozila.com/apps/oldsync/passwords",
        ),
        (
            "https://identity.mozilla.com/apps/oldsyncer",
            "https://identity.mozila.com/apps/oldsync",
        ),
        (
            "https://identity.mozilla.com/apps/oldsync",
            "https://identity.mozila.com/apps/oldsyncer",
        ),
        (
            "https://identity.mozilla.org/apps/oldsync",
            "https://identity.mozila.com/apps/oldsync",
        ),
    ];
    for (held, required) in vectors {
        assert_not_implies(held, required);
        let intended = required.replace("mozila.com", "mozilla.com");
        assert_not_implies(held, &intended);
    }
}

// === short names ===

#[test]
fn write_must_be_granted_explicitly() {
    assert_not_implies("profile", "profile:write");
    assert_not_implies("profile", "profile:email:write");
    assert_implies("profile:write", "profile:avatar:write");
    assert_implies("profile:avatar:write", "profile:avatar");
    assert_not_implies("profile:avatar:write", "profile:display_name");
}

#[test]
fn short_names_are_case_sensitive_and_component_wise() {
    assert_not_implies("Profile", "profile");
    assert_not_implies("profile", "profile_x");
    assert_not_implies("prof", "profile");
    assert_implies("email", "email");
    assert_not_implies("email", "profile:email");
}

#[test]
fn invalid_short_names_are_refused() {
    for value in [
        "write", "a::b", ":a", "a:", "a-b", "a.b", "a/b", "é", "profile:", "a b\tc",
    ] {
        assert!(Scope::parse(value).is_err(), "{value:?} should be refused");
    }
    for value in ["write:profile", "profile:write:email", "a_1:B2", "https"] {
        assert!(Scope::parse(value).is_ok(), "{value:?} should parse");
    }
}

// === URL scopes ===

#[test]
fn url_scopes_must_be_canonical_https() {
    let refused = [
        "http://identity.mozilla.com/apps/oldsync",
        "https:identity.mozilla.com/apps/oldsync",
        "https:/identity.mozilla.com/apps/oldsync",
        "HTTPS://identity.mozilla.com/apps/oldsync",
        "https://identity.mozilla.com",
        "https://identity.mozilla.com/",
        "https://identity.mozilla.com/apps/",
        "https://identity.mozilla.com#read",
        "https://identity.mozilla.com?x=1",
        "https://identity.mozilla.com/apps?x=1",
        "https://identity.mozilla.com/apps/oldsync?",
        "https://user@identity.mozilla.com/apps",
        "https://user:pw@identity.mozilla.com/apps",
        "https://Identity.Mozilla.com/apps/oldsync",
        "https://identity.mozilla.com./apps",
        "https://identity..mozilla.com/apps",
        "https://127.0.0.1/apps",
        "https://[::1]/apps",
        "https://identity.mozilla.com:443/apps",
        "https://identity.mozilla.com:/apps",
        "https://identity.mozilla.com:0443/apps",
        "https://identity.mozilla.com:65536/apps",
        "https://identity.mozilla.com:x/apps",
        "https://identity.mozilla.com//apps",
        "https://identity.mozilla.com/apps//oldsync",
        "https://identity.mozilla.com/apps/./oldsync",
        "https://identity.mozilla.com/apps/../oldsync",
        "https://identity.mozilla.com/apps/%6fldsync",
        "https://identity.mozilla.com/apps/old{sync}",
        "https://identity.mozilla.com/apps/oldsync#",
        "https://identity.mozilla.com/apps/oldsync#read#write",
        "https://identity.mozilla.com/apps/oldsync#re-ad",
        "https:// identity.mozilla.com/apps",
    ];
    for value in refused {
        assert!(Scope::parse(value).is_err(), "{value:?} should be refused");
    }
    let accepted = [
        OLDSYNC,
        "https://identity.mozilla.com/apps/oldsync#read",
        "https://identity.mozilla.com/account/subscriptions/iap",
        "https://identity.mozilla.com/tokens/session",
        "https://example.com:8443/a/b_c~d#write_1",
        "https://xn--bcher-kva.example/apps",
    ];
    for value in accepted {
        let scope = Scope::parse(value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
        assert!(scope.is_url());
        assert_eq!(scope.to_string(), value);
    }
}

#[test]
fn url_implication_needs_same_origin_including_port() {
    assert_not_implies("https://example.com:8443/a", "https://example.com/a");
    assert_not_implies("https://example.com/a", "https://example.com:8443/a");
    assert_implies("https://example.com:8443/a", "https://example.com:8443/a/b");
    assert_not_implies("https://a.example.com/x", "https://example.com/x");
}

#[test]
fn url_fragment_rules() {
    // A holder without a fragment implies every fragment below it.
    assert_implies(OLDSYNC, "https://identity.mozilla.com/apps/oldsync#write");
    // A holder with a fragment implies only that fragment.
    assert_implies(
        "https://identity.mozilla.com/apps/oldsync#write",
        "https://identity.mozilla.com/apps/oldsync/tabs#write",
    );
    assert_not_implies("https://identity.mozilla.com/apps/oldsync#read", OLDSYNC);
    assert_not_implies(
        "https://identity.mozilla.com/apps/oldsync#read",
        "https://identity.mozilla.com/apps/oldsync#reader",
    );
}

#[test]
fn urls_and_short_names_never_imply_each_other() {
    assert_not_implies(OLDSYNC, "profile");
    assert_not_implies("profile:write", OLDSYNC);
    // As in FxA, anything starting `https:` is read as a URL, so this is no short name.
    assert!(Scope::parse("https:write").is_err());
}

// === sets, parsing, bounds ===

#[test]
fn set_parsing_splits_on_runs_of_spaces_and_drops_duplicates() {
    let s = set("  profile   profile:email profile ");
    assert_eq!(s.len(), 2);
    assert_eq!(s.to_string(), "profile profile:email");
    assert_eq!(set(""), ScopeSet::default());
    assert!(set("   ").is_empty());
}

#[test]
fn display_round_trips() {
    for text in [
        "profile",
        "profile:email:write https://identity.mozilla.com/apps/oldsync#read openid",
        "",
    ] {
        let parsed = set(text);
        assert_eq!(parsed.to_string(), text);
        assert_eq!(set(&parsed.to_string()), parsed);
    }
    let scope: Scope = "profile:write".parse().unwrap();
    assert_eq!(scope.to_string(), "profile:write");
    assert_eq!(format!("{scope:?}"), "Scope(\"profile:write\")");
}

#[test]
fn strict_parse_refuses_an_invalid_value_and_granted_parse_drops_it() {
    let text = "profile write https://identity.mozilla.com/apps/ a\"b";
    assert_eq!(
        ScopeSet::parse(text),
        Err(ScopeError::Invalid("write".into()))
    );
    let granted = ScopeSet::parse_granted(text).unwrap();
    assert_eq!(granted.to_string(), "profile");
}

#[test]
fn other_whitespace_does_not_separate_values() {
    // RFC 6749 and FxA split on spaces only; a tab makes one invalid value.
    let granted = ScopeSet::parse_granted("profile\tprofile:email openid").unwrap();
    assert_eq!(granted.to_string(), "openid");
}

#[test]
fn oversized_scope_strings_are_errors() {
    let long = "a".repeat(MAX_SCOPE_BYTES + 1);
    assert_eq!(
        ScopeSet::parse_granted(&long),
        Err(ScopeError::TooLong {
            len: MAX_SCOPE_BYTES + 1
        })
    );
    assert!(Scope::parse(&long).is_err());
    let just_fits = format!("a{}", " ".repeat(MAX_SCOPE_BYTES - 1));
    assert_eq!(ScopeSet::parse_granted(&just_fits).unwrap().len(), 1);
}

#[test]
fn too_many_values_is_an_error_even_if_invalid_or_duplicated() {
    let at_limit = vec!["profile"; MAX_SCOPE_VALUES].join(" ");
    assert_eq!(ScopeSet::parse_granted(&at_limit).unwrap().len(), 1);
    let over = vec!["x\""; MAX_SCOPE_VALUES + 1].join(" ");
    assert_eq!(ScopeSet::parse_granted(&over), Err(ScopeError::TooMany));
}

#[test]
fn granted_value_lists_have_the_same_bounds() {
    let granted = ScopeSet::from_granted_values(["profile", "", "bad value", OLDSYNC]).unwrap();
    assert_eq!(granted.to_string(), format!("profile {OLDSYNC}"));
    let many = vec!["a"; MAX_SCOPE_VALUES + 1];
    assert_eq!(
        ScopeSet::from_granted_values(many),
        Err(ScopeError::TooMany)
    );
    let big = "a".repeat(MAX_SCOPE_BYTES / 2);
    assert!(matches!(
        ScopeSet::from_granted_values([big.as_str(), big.as_str()]),
        Err(ScopeError::TooLong { .. })
    ));
}

#[test]
fn invalid_value_errors_quote_a_bounded_prefix() {
    let value = format!("é{}", "\"".repeat(500));
    let Err(ScopeError::Invalid(quoted)) = Scope::parse(&value) else {
        panic!("should be refused");
    };
    assert!(quoted.len() <= QUOTED_PREFIX);
}

#[test]
fn implies_str_matches_implies_and_refuses_invalid_requirements() {
    let granted = set("profile https://identity.mozilla.com/apps/oldsync#read");
    assert!(granted.implies_str("profile:email"));
    assert!(granted.implies_str("https://identity.mozilla.com/apps/oldsync/tabs#read"));
    assert!(!granted.implies_str("profile:write"));
    assert!(!granted.implies_str("write"));
    assert!(!granted.implies_str(""));
    assert!(!ScopeSet::default().implies_str("profile"));
}

// === properties ===

/// FxA's own algorithm (lib/scopes.js): every implicant of `value` as a string, so "A implies
/// B" is "A is among B's implicants". An independent oracle for [`Scope::implies`].
fn fxa_implicants(value: &Scope) -> Vec<String> {
    let text = value.as_str();
    let mut out = Vec::new();
    if value.is_url() {
        let after_origin = text["https://".len()..].find('/').unwrap() + "https://".len();
        let (origin, rest) = text.split_at(after_origin);
        let (path, fragment) = rest.split_at(rest.find('#').unwrap_or(rest.len()));
        let mut parts: Vec<&str> = path.split('/').collect();
        while parts.len() > 1 {
            let parent = format!("{origin}{}", parts.join("/"));
            if !fragment.is_empty() {
                out.push(format!("{parent}{fragment}"));
            }
            out.push(parent);
            parts.pop();
        }
    } else {
        let mut names: Vec<&str> = text.split(':').collect();
        let write = names.last() == Some(&"write");
        if write {
            names.pop();
        }
        while !names.is_empty() {
            out.push(format!("{}:write", names.join(":")));
            if !write {
                out.push(names.join(":"));
            }
            names.pop();
        }
    }
    out
}

/// Scope-like strings: mostly valid, with the edge cases that matter for implication.
fn scope_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "(write|profile|a|ab|b)(:(write|email|a|ab|b)){0,3}",
        "https://(a|b)\\.(com|org)(:8443)?(/(x|xy|y|write)){1,3}(#(read|write))?",
        "[ -~]{0,20}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn parsing_arbitrary_strings_never_panics(input in any::<String>()) {
        let _ = ScopeSet::parse(&input);
        let _ = ScopeSet::parse_granted(&input);
        let _ = Scope::parse(&input);
        let _ = ScopeSet::from_granted_values(input.split(','));
        let _ = ScopeSet::default().implies_str(&input);
    }

    #[test]
    fn parsing_scope_shaped_garbage_never_panics(input in "[ -~]{0,200}") {
        if let Ok(set) = ScopeSet::parse_granted(&input) {
            prop_assert_eq!(ScopeSet::parse(&set.to_string()), Ok(set));
        }
    }

    #[test]
    fn implication_is_reflexive_and_round_trips(value in scope_like()) {
        if let Ok(scope) = Scope::parse(&value) {
            prop_assert!(scope.implies(&scope));
            prop_assert_eq!(scope.to_string(), value.clone());
            let single = ScopeSet::parse(&value).unwrap();
            prop_assert!(single.implies(&scope));
            prop_assert!(single.implies_str(&value));
        }
    }

    #[test]
    fn implication_agrees_with_fxa_implicant_sets(a in scope_like(), b in scope_like()) {
        if let (Ok(a), Ok(b)) = (Scope::parse(&a), Scope::parse(&b)) {
            let expected = fxa_implicants(&b).iter().any(|i| i == a.as_str());
            prop_assert_eq!(a.implies(&b), expected, "{:?} implies {:?}", a, b);
        }
    }
}
