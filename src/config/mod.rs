//! Loading `gateway.toml`: parse → deserialize → validate → typed [`Config`].
//!
//! Every problem in the file is reported, not just the first, each as
//! `gateway.toml:14: routes[2].upstream: unknown upstream "profle"` (file as given, line of the
//! offending key, key path, what is wrong). Secrets are read from environment variables or files
//! named in the file, never inline, and never appear in a message. `--check` and (later) reload
//! share [`load`] (reload through [`load_with_sources`], which also says which files were read).
//!
//! How lines are found: the file is parsed once into toml's spanned document; every key is
//! deserialized on its own (so a wrong value hides neither the other keys of its table nor
//! their checks, see `read`), and every problem carries a key path that is looked up in the
//! spanned document.

mod document;
pub mod model;
mod model_jwt;
mod net;
mod raw;
mod raw_jwt;
mod read;
mod secret;
pub mod sources;
mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::*;
pub use model_jwt::{JwtConfig, SecurityEventsConfig};
pub use raw::SecretRef;
pub use secret::EnvLookup;
pub use sources::{SourceFile, Sources};
pub use units::{format_rfc3339, parse_duration, parse_rfc3339, parse_size};

/// Loads and validates the configuration file at `path`. Relative paths inside it (certificates,
/// CA files, secret files) are resolved against the file's directory.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_sources(path).0
}

/// [`load`], and the files it read (or tried to: a reload refused for a missing file watches
/// for that file too), with the hash that identifies the configuration.
pub fn load_with_sources(path: &Path) -> (Result<Config, ConfigErrors>, Sources) {
    let src = match std::fs::read_to_string(path) {
        Ok(src) => src,
        Err(e) => {
            let errors = ConfigErrors {
                file: path.to_path_buf(),
                errors: vec![ConfigError {
                    line: None,
                    key: String::new(),
                    message: e.to_string(),
                }],
            };
            let sources = Sources {
                config_digest: None,
                ..Sources::new(path, b"", Vec::new())
            };
            return (Err(errors), sources);
        }
    };
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let (result, files) = sources::recording(|| parse_str(&src, path, base_dir));
    (result, Sources::new(path, src.as_bytes(), files))
}

/// Parses and validates configuration text. `source` names the file in messages; `base_dir`
/// resolves relative file paths.
pub fn parse_str(src: &str, source: &Path, base_dir: &Path) -> Result<Config, ConfigErrors> {
    parse_with_env(src, source, base_dir, &|name| std::env::var_os(name))
}

/// [`parse_str`] with an explicit environment for `{ env = "..." }` secrets (tests use it
/// instead of mutating the process environment).
pub fn parse_with_env(
    src: &str,
    source: &Path,
    base_dir: &Path,
    env: EnvLookup<'_>,
) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::default();
    let result = document::Document::parse(src, &mut problems).map(|doc| {
        let raw = doc.read(&mut problems);
        let ctx = validate::Context {
            source,
            base_dir,
            env,
        };
        let config = validate::validate(raw, &ctx, &mut problems);
        (doc, config)
    });
    let locate = |p: &Problem| match (&result, p.offset) {
        (_, Some(offset)) => Some(document::line_of_offset(src, offset)),
        (Some((doc, _)), None) => doc.line_of(&p.path, src),
        (None, None) => None,
    };
    let errors: Vec<ConfigError> = problems
        .items
        .iter()
        .map(|p| ConfigError {
            line: locate(p),
            key: p.path.clone(),
            message: p.message.clone(),
        })
        .collect();
    match result {
        Some((_, Some(config))) if errors.is_empty() => Ok(config),
        _ => Err(ConfigErrors {
            file: source.to_path_buf(),
            errors: sorted(errors),
        }),
    }
}

fn sorted(mut errors: Vec<ConfigError>) -> Vec<ConfigError> {
    // Stable: problems on one line keep the order they were found in.
    errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
    errors
}

/// Everything wrong with a configuration file. `Display` prints one problem per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file as named on the command line.
    pub file: PathBuf,
    /// At least one problem, in file order.
    pub errors: Vec<ConfigError>,
}

/// One problem: where (line, key path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line of the offending key (or of the nearest enclosing table when the key is
    /// missing); `None` when the file could not be read at all.
    pub line: Option<usize>,
    /// Dotted, indexed key path such as `routes[2].upstream`; empty for syntax errors.
    pub key: String,
    /// What is wrong, for the operator. Never contains a secret value.
    pub message: String,
}

impl std::error::Error for ConfigErrors {}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{}", self.file.display())?;
            if let Some(line) = e.line {
                write!(f, ":{line}")?;
            }
            if !e.key.is_empty() {
                write!(f, ": {}", e.key)?;
            }
            write!(f, ": {}", e.message)?;
        }
        Ok(())
    }
}

/// Problems collected while loading; turned into [`ConfigError`]s once lines are known.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    items: Vec<Problem>,
}

#[derive(Debug)]
struct Problem {
    path: String,
    /// Byte offset in the source, when the parser or deserializer knew it exactly.
    offset: Option<usize>,
    message: String,
}

impl Problems {
    /// A problem at a key path; its line is looked up in the document.
    pub(crate) fn at(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.items.push(Problem {
            path: path.into(),
            offset: None,
            message: message.into(),
        });
    }

    /// A problem whose exact position is already known.
    pub(crate) fn at_offset(
        &mut self,
        path: impl Into<String>,
        offset: Option<usize>,
        message: impl Into<String>,
    ) {
        self.items.push(Problem {
            path: path.into(),
            offset,
            message: message.into(),
        });
    }

    /// Whether a problem was reported at `path` or below it: a check that depends on a key
    /// being absent stays quiet when the key is there but could not be read.
    pub(crate) fn reported(&self, path: &str) -> bool {
        self.items.iter().any(|p| {
            p.path
                .strip_prefix(path)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
        })
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_amo;
#[cfg(test)]
mod tests_jwt;
#[cfg(test)]
mod tests_redis;
#[cfg(test)]
mod tests_refresh;
#[cfg(test)]
mod tests_reload;
#[cfg(test)]
mod tests_rules;
#[cfg(test)]
mod tests_tls;
