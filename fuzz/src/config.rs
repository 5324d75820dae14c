//! Configuration files: the whole reader (TOML, every section's keys, units, cross-references,
//! validation) on any text. Every `{ env = ... }` secret resolves to a marker value that must
//! never show up in an error message; relative `{ file = ... }` paths resolve in an empty
//! directory.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use fxa_gateway::config::{self, parse_duration, parse_rfc3339, parse_size};

const SECRET: &str = "FUZZ-SECRET-VALUE-7c1e9a";

static EMPTY_DIR: LazyLock<PathBuf> = LazyLock::new(|| {
    let dir = std::env::temp_dir().join(format!("fxa-gateway-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
});

pub fn run(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |_: &str| Some(OsString::from(SECRET));
    match config::parse_with_env(text, Path::new("fuzz.toml"), &EMPTY_DIR, &env) {
        Ok(config) => {
            assert!(!config.listeners.is_empty());
        }
        Err(errors) => {
            assert!(!errors.errors.is_empty(), "refused without a reason");
            let shown = errors.to_string();
            assert!(!shown.contains(SECRET), "a secret in an error message");
        }
    }
    // The unit readers on the raw text, as `--check` hands them each value.
    let first_line = text.lines().next().unwrap_or("");
    let _ = parse_duration(first_line);
    let _ = parse_size(first_line);
    let _ = parse_rfc3339(first_line);
}
