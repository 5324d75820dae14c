//! Scope strings and sets: a granted scope string (as introspection returns it) and a required
//! value, split at the first NUL byte. Checks the parsers agree with each other and that
//! implication behaves as FxA's rules say it must for any input.

use fxa_gateway::auth::scope::{MAX_SCOPE_BYTES, Scope, ScopeSet};

pub fn run(data: &[u8]) {
    let (granted, required) = crate::split_at_byte(data, 0);
    let (Ok(granted), Ok(required)) = (std::str::from_utf8(granted), std::str::from_utf8(required))
    else {
        return;
    };
    let strict = ScopeSet::parse(granted);
    let lenient = ScopeSet::parse_granted(granted);
    if let Ok(strict) = &strict {
        // A string the strict parser takes loses nothing in the lenient one.
        assert!(lenient.as_ref().is_ok_and(|l| l == strict));
    }
    let listed = ScopeSet::from_granted_values(granted.split(' ').filter(|v| !v.is_empty()));
    if let (Ok(lenient), Ok(listed)) = (&lenient, &listed) {
        assert!(
            lenient == listed,
            "string and list forms differ for {granted:?}"
        );
    }
    let Ok(set) = lenient else {
        return;
    };
    for held in &set {
        // Valid values round-trip, and every scope implies itself.
        let again = Scope::parse(held.as_str()).expect("a kept value parses again");
        assert!(again == *held);
        assert!(held.implies(held), "{held:?} does not imply itself");
        assert!(set.implies(held));
    }
    let one = Scope::parse(required);
    if required.len() <= MAX_SCOPE_BYTES {
        let by_value = one.as_ref().is_ok_and(|r| set.implies(r));
        assert_eq!(
            set.implies_str(required),
            by_value,
            "{granted:?} / {required:?}"
        );
    }
    if let Ok(one) = one {
        let alone = ScopeSet::parse(one.as_str()).expect("one valid value is a valid set");
        assert_eq!(alone.len(), 1);
        // Write access never follows from read access alone (`profile` does not grant
        // `profile:write`).
        if let Some(read) = one.as_str().strip_suffix(":write")
            && !one.is_url()
            && !read.contains(":write")
            && let Ok(read_set) = ScopeSet::parse(read)
        {
            assert!(!read_set.implies(&one), "{read:?} implies {one:?}");
        }
    }
}
