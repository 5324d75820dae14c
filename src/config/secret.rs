//! Resolving a [`SecretRef`] (`{ env = "NAME" }` / `{ file = "path" }`) into a [`Secret`].
//!
//! Error messages name the variable or file and say what is wrong; they never contain the
//! secret's value, not even a part of it.

use std::ffi::OsString;
use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use super::model::Secret;

/// Looks up an environment variable; injectable so tests need not mutate the process
/// environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<OsString>;

/// Where a secret comes from: `{ env = "NAME" }` or `{ file = "path" }`. Never the value itself.
///
/// Reusable by every feature that needs key material or credentials; resolve it with
/// [`SecretRef::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// The value of this environment variable.
    Env(String),
    /// The contents of this file (relative paths are relative to the config file).
    File(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretTable {
    env: Option<String>,
    file: Option<String>,
}

pub(crate) const INLINE_SECRET: &str =
    r#"secrets are never written inline: use { file = "path" } or { env = "VARIABLE" }"#;

impl<'de> Deserialize<'de> for SecretRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SecretRef;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"{ file = "path" } or { env = "VARIABLE" }"#)
            }
            // Deliberately does not echo the value: it may be the secret itself.
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SecretRef, E> {
                Err(E::custom(INLINE_SECRET))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretRef, A::Error> {
                let t = RawSecretTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                match (t.env, t.file) {
                    (Some(env), None) => Ok(SecretRef::Env(env)),
                    (None, Some(file)) => Ok(SecretRef::File(file)),
                    _ => Err(de::Error::custom(
                        r#"give exactly one of { file = "path" } or { env = "VARIABLE" }"#,
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl SecretRef {
    /// Reads the secret from the process environment or from a file (relative paths are
    /// resolved against `base_dir`, the config file's directory).
    ///
    /// A file's single trailing newline (`\n` or `\r\n`) is removed, as editors add one,
    /// unless the content is PEM, which is kept byte for byte. An empty secret is an error.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        self.resolve_with(base_dir, &|name| std::env::var_os(name))
    }

    /// [`SecretRef::resolve`] with an explicit environment.
    pub fn resolve_with(&self, base_dir: &Path, env: EnvLookup<'_>) -> Result<Secret, String> {
        match self {
            SecretRef::Env(name) => {
                if name.is_empty() || name.contains('=') || name.contains('\0') {
                    return Err(format!("{name:?} is not a valid environment variable name"));
                }
                let value = env(name)
                    .ok_or_else(|| format!("environment variable {name} is not set"))?
                    .into_encoded_bytes();
                if value.is_empty() {
                    return Err(format!("environment variable {name} is empty"));
                }
                Ok(Secret::new(value))
            }
            SecretRef::File(file) => {
                let path = resolve_path(base_dir, file);
                let mut value = read(&path, true)?;
                if !value.starts_with(b"-----BEGIN") {
                    trim_one_newline(&mut value);
                }
                if value.is_empty() {
                    return Err(format!("file {} is empty", path.display()));
                }
                Ok(Secret::new(value))
            }
        }
    }
}

/// `path` as written in the config, resolved against the config file's directory.
pub fn resolve_path(base_dir: &Path, path: &str) -> PathBuf {
    base_dir.join(path)
}

/// Largest file a config may name (certificate chains, CA bundles, keys, secrets): far above
/// any real one, and a bound on what a wrong path (a device such as `/dev/zero`) makes start-up
/// and `--check` read.
pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a whole (non-secret) file, at most [`MAX_FILE_BYTES`], with an operator-facing error
/// message; the read is recorded in the load's [`super::sources`], so a reload watches the file
/// and the config hash covers it.
pub fn read_file(path: &Path) -> Result<Vec<u8>, String> {
    read(path, false)
}

fn read(path: &Path, secret: bool) -> Result<Vec<u8>, String> {
    let result = read_bounded(path);
    super::sources::record(path, secret, result.as_deref().ok());
    result
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, String> {
    let cannot = |e: std::io::Error| format!("cannot read file {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut value = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut value)
        .map_err(cannot)?;
    if value.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "file {} is larger than {} MiB",
            path.display(),
            MAX_FILE_BYTES >> 20
        ));
    }
    Ok(value)
}

fn trim_one_newline(value: &mut Vec<u8>) {
    if value.ends_with(b"\r\n") {
        value.truncate(value.len() - 2);
    } else if value.ends_with(b"\n") {
        value.truncate(value.len() - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with(name: &'static str, value: &'static str) -> impl Fn(&str) -> Option<OsString> {
        move |n| (n == name).then(|| OsString::from(value))
    }

    #[test]
    fn env_secret_is_read_unchanged() {
        let env = env_with("FXA_TEST_SECRET", "s3cret\n");
        let s = SecretRef::Env("FXA_TEST_SECRET".into()).resolve_with(Path::new("."), &env);
        assert_eq!(s.map(|s| s.expose().to_vec()), Ok(b"s3cret\n".to_vec()));
    }

    #[test]
    fn unset_or_empty_env_secret_is_an_error_naming_the_variable() {
        let env = env_with("EMPTY_ONE", "");
        let unset = SecretRef::Env("NOT_SET_ANYWHERE".into()).resolve_with(Path::new("."), &env);
        assert_eq!(
            unset.unwrap_err(),
            "environment variable NOT_SET_ANYWHERE is not set"
        );
        let empty = SecretRef::Env("EMPTY_ONE".into()).resolve_with(Path::new("."), &env);
        assert_eq!(
            empty.unwrap_err(),
            "environment variable EMPTY_ONE is empty"
        );
    }

    #[test]
    fn real_environment_lookup_reports_unset_variable() {
        let r = SecretRef::Env("FXA_GATEWAY_SURELY_UNSET_4711".into()).resolve(Path::new("."));
        assert_eq!(
            r.unwrap_err(),
            "environment variable FXA_GATEWAY_SURELY_UNSET_4711 is not set"
        );
    }

    #[test]
    fn file_secret_is_relative_to_base_dir_and_loses_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "hunter2\r\n").unwrap();
        let s = SecretRef::File("s.txt".into()).resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), b"hunter2");
    }

    #[test]
    fn pem_file_is_kept_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        // Built at run time so no key-looking text sits in git (it is not a real key anyway).
        let pem = format!(
            "-----BEGIN {0}-----\nAAAA\n-----END {0}-----\n",
            "PRIVATE KEY"
        );
        std::fs::write(dir.path().join("k.pem"), &pem).unwrap();
        let s = SecretRef::File("k.pem".into()).resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), pem.as_bytes());
    }

    #[test]
    fn missing_or_empty_file_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = SecretRef::File("nope.key".into())
            .resolve(dir.path())
            .unwrap_err();
        assert!(missing.starts_with("cannot read file "), "{missing}");
        assert!(missing.contains("nope.key"), "{missing}");
        std::fs::write(dir.path().join("empty"), "\n").unwrap();
        let empty = SecretRef::File("empty".into())
            .resolve(dir.path())
            .unwrap_err();
        assert!(empty.ends_with("empty is empty"), "{empty}");
    }

    #[test]
    fn secret_debug_is_redacted() {
        let env = env_with("K", "topsecretvalue");
        let s = SecretRef::Env("K".into())
            .resolve_with(Path::new("."), &env)
            .unwrap();
        assert!(!format!("{s:?}").contains("topsecretvalue"));
    }
}
