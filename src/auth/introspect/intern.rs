//! Sharing what introspection answers repeat (issue 19: 100,000 cached tokens). A user's
//! tokens carry the same `sub`, and every token the same handful of `client_id`, `scope` and
//! `token_type` values: each distinct value is held once, behind a reference count, rather than
//! once per cached token.
//!
//! [`Interner`] is a set of shared values. It holds a strong reference to each, and drops the
//! ones no one else holds any more whenever it has doubled since it last did (amortized O(1)
//! per insert), so it never holds more than about twice what is in use.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

/// An immutable string behind a reference count: cloning it is a counter increment. Reads as
/// a `&str` (it derefs to one) and compares with `str`, `&str` and `String`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SharedStr(Arc<str>);

/// A set of shared values; see the module doc.
pub(super) struct Interner<T: ?Sized> {
    inner: Mutex<Set<T>>,
}

struct Set<T: ?Sized> {
    values: HashSet<Arc<T>>,
    /// The size at which values no one else holds are dropped.
    purge_at: usize,
}

/// The smallest set that is ever purged.
const MIN_PURGE_AT: usize = 1024;

/// The strings of every introspection answer (and of the tokens the gateway describes itself).
static STRINGS: LazyLock<Interner<str>> = LazyLock::new(Interner::new);

// === impl SharedStr ===

impl SharedStr {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The process's shared copy of `value` (made if there is none).
    pub fn interned(value: &str) -> Self {
        Self::interned_in(&STRINGS, value)
    }

    fn interned_in(interner: &Interner<str>, value: &str) -> Self {
        SharedStr(interner.intern(value, || Arc::from(value)))
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SharedStr {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SharedStr {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl From<&str> for SharedStr {
    fn from(value: &str) -> Self {
        SharedStr(Arc::from(value))
    }
}

impl From<String> for SharedStr {
    fn from(value: String) -> Self {
        SharedStr(Arc::from(value))
    }
}

impl From<SharedStr> for String {
    fn from(value: SharedStr) -> Self {
        value.0.as_ref().to_owned()
    }
}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for SharedStr {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

impl std::fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&*self.0, f)
    }
}

impl std::fmt::Display for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// === impl Interner ===

impl<T: ?Sized + Hash + Eq> Interner<T> {
    pub(super) fn new() -> Self {
        Interner {
            inner: Mutex::new(Set {
                values: HashSet::new(),
                purge_at: MIN_PURGE_AT,
            }),
        }
    }

    /// The held value equal to `value`, or the one `make` makes (then held).
    pub(super) fn intern(&self, value: &T, make: impl FnOnce() -> Arc<T>) -> Arc<T> {
        let mut set = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(held) = set.values.get(value) {
            return Arc::clone(held);
        }
        if set.values.len() >= set.purge_at {
            set.purge();
        }
        let made = make();
        set.values.insert(Arc::clone(&made));
        made
    }

    /// How many values are held (tests).
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values
            .len()
    }
}

impl<T: ?Sized + Hash + Eq> Set<T> {
    /// Drops the values only the set holds. Under the lock no one can take a new reference
    /// from the set, so a count of one stays one.
    fn purge(&mut self) {
        self.values.retain(|v| Arc::strong_count(v) > 1);
        let live = self.values.len();
        if self.values.capacity() > 4 * live.max(MIN_PURGE_AT) {
            self.values.shrink_to(2 * live);
        }
        self.purge_at = (2 * live).max(MIN_PURGE_AT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation() {
        let interner = Interner::<str>::new();
        let a = SharedStr::interned_in(&interner, "profile");
        let b = SharedStr::interned_in(&interner, &String::from("profile"));
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert_eq!(a, "profile");
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn values_no_one_holds_are_dropped_once_the_set_doubles() {
        let interner = Interner::<str>::new();
        let kept = SharedStr::interned_in(&interner, "kept");
        for i in 1..MIN_PURGE_AT {
            drop(SharedStr::interned_in(&interner, &format!("gone {i}")));
        }
        assert_eq!(interner.len(), MIN_PURGE_AT);
        // The next new value purges: only "kept" (held here) and the new one stay.
        let last = SharedStr::interned_in(&interner, "last");
        assert_eq!(interner.len(), 2);
        assert!(Arc::ptr_eq(
            &kept.0,
            &SharedStr::interned_in(&interner, "kept").0
        ));
        drop(last);
    }
}
