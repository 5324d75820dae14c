//! Keyed hashes for key names and the AEAD for stored tokens, both on aws-lc-rs. The keys come
//! from `[redis] hashing_key` / `encryption_key`, the same on every replica, so every replica
//! derives the same key names and can open what another sealed.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::{hmac, rand};

use crate::config::Secret;

/// A sealed value: nonce ‖ ciphertext ‖ tag.
pub type Sealed = Vec<u8>;

/// Bytes of the HMAC kept in a key name: 128 bits.
const NAME_BYTES: usize = 16;

pub(super) struct Keys {
    names: hmac::Key,
    aead: LessSafeKey,
}

impl Keys {
    pub(super) fn new(hashing_key: &Secret, encryption_key: &Secret) -> Keys {
        // The configured material is any length of at least 32 bytes: one HMAC makes it the
        // AES-256 key, bound to its purpose.
        let kdf = hmac::Key::new(hmac::HMAC_SHA256, encryption_key.expose());
        let derived = hmac::sign(&kdf, b"fxa-gateway redis aead v1");
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref())
            .expect("an HMAC-SHA256 output is an AES-256 key");
        Keys {
            names: hmac::Key::new(hmac::HMAC_SHA256, hashing_key.expose()),
            aead: LessSafeKey::new(unbound),
        }
    }

    fn tag(&self, domain: &str, value: &[u8]) -> hmac::Tag {
        let mut ctx = hmac::Context::with_key(&self.names);
        ctx.update(domain.as_bytes());
        ctx.update(&[0]);
        ctx.update(value);
        ctx.sign()
    }

    pub(super) fn hash_hex(&self, domain: &str, value: &[u8]) -> String {
        hex(&self.tag(domain, value).as_ref()[..NAME_BYTES])
    }

    pub(super) fn hash_u64(&self, domain: &str, value: &[u8]) -> u64 {
        let tag = self.tag(domain, value);
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(first)
    }

    /// Seals `plaintext` bound to `aad` (the Redis key it is stored under, so a value moved to
    /// another key does not open).
    pub(super) fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Option<Sealed> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        let mut body = plaintext.to_vec();
        self.aead
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut body,
            )
            .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    pub(super) fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(aad), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

pub(super) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf).expect("the system RNG is available at startup");
    hex(&buf)
}

pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.is_ascii() {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        Keys::new(&Secret::new(vec![1; 32]), &Secret::new(vec![2; 32]))
    }

    #[test]
    fn sealed_values_open_only_under_their_key_name() {
        let k = keys();
        let sealed = k.seal(b"key-a", b"token").unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"token"));
        assert_eq!(k.open(b"key-a", &sealed).as_deref(), Some(&b"token"[..]));
        assert_eq!(k.open(b"key-b", &sealed), None);
        let other = Keys::new(&Secret::new(vec![1; 32]), &Secret::new(vec![3; 32]));
        assert_eq!(other.open(b"key-a", &sealed), None);
    }

    #[test]
    fn names_depend_on_domain_and_key() {
        let k = keys();
        assert_eq!(k.hash_hex("rt", b"x"), k.hash_hex("rt", b"x"));
        assert_ne!(k.hash_hex("rt", b"x"), k.hash_hex("at", b"x"));
        assert_eq!(k.hash_hex("rt", b"x").len(), 32);
        let other = Keys::new(&Secret::new(vec![9; 32]), &Secret::new(vec![2; 32]));
        assert_ne!(k.hash_hex("rt", b"x"), other.hash_hex("rt", b"x"));
    }
}
