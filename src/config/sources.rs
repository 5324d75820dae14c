//! The files a configuration was loaded from: the config file itself and every file it names
//! (certificates, CA bundles, secret files), recorded while loading so that a reload can watch
//! them and `/__version__` can say which configuration is live.
//!
//! Every file the loader reads goes through [`super::secret::read_file`] or a `{ file = ... }`
//! secret, which record it here: a key added later is watched without further work. The
//! published hash covers the config file and the non-secret files only; a secret file is
//! recorded by path alone (its contents are never hashed, not even internally).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use aws_lc_rs::digest;

/// One file a load read, or tried to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: PathBuf,
    /// A secret (private key, API secret): never hashed.
    pub secret: bool,
    /// SHA-256 of what was read (non-secret files only; `None` when it could not be read).
    pub digest: Option<[u8; 32]>,
}

/// What one load read: the config file and the files it names, with the hash published as the
/// live configuration's identity.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sources {
    /// The config file as named on the command line.
    pub config: PathBuf,
    /// Files the config names, in the order they were read, each once.
    pub files: Vec<SourceFile>,
    /// Lower-case hex SHA-256 over the config file and the non-secret files.
    pub hash: String,
    /// SHA-256 of the config file as read (`None` when it could not be read).
    pub config_digest: Option<[u8; 32]>,
}

thread_local! {
    /// The files read by the load running on this thread (loading is synchronous).
    static READS: RefCell<Option<Vec<SourceFile>>> = const { RefCell::new(None) };
}

/// Runs `load` and returns what it read. Nested calls record into the outermost one.
pub(super) fn recording<T>(load: impl FnOnce() -> T) -> (T, Vec<SourceFile>) {
    let outer = READS.with(|r| r.borrow_mut().replace(Vec::new()));
    let value = load();
    let files = READS.with(|r| {
        let mine = r.borrow_mut().take().unwrap_or_default();
        if let Some(mut outer) = outer {
            outer.extend(mine.iter().cloned());
            *r.borrow_mut() = Some(outer);
        }
        mine
    });
    (value, files)
}

/// Records one read (`contents` is `None` when it failed). Secrets are recorded without a
/// digest.
pub(super) fn record(path: &Path, secret: bool, contents: Option<&[u8]>) {
    READS.with(|r| {
        let mut reads = r.borrow_mut();
        let Some(reads) = reads.as_mut() else { return };
        if reads.iter().any(|f| f.path == path) {
            return;
        }
        let digest = match (secret, contents) {
            (false, Some(bytes)) => Some(sha256(bytes)),
            _ => None,
        };
        reads.push(SourceFile {
            path: path.to_path_buf(),
            secret,
            digest,
        });
    });
}

impl Sources {
    pub(super) fn new(config: &Path, src: &[u8], files: Vec<SourceFile>) -> Sources {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(b"fxa-gateway config\0");
        ctx.update(&(src.len() as u64).to_be_bytes());
        ctx.update(src);
        let mut named: Vec<&SourceFile> = files.iter().filter(|f| !f.secret).collect();
        named.sort_by(|a, b| a.path.cmp(&b.path));
        for f in named {
            let path = f.path.to_string_lossy();
            ctx.update(&(path.len() as u64).to_be_bytes());
            ctx.update(path.as_bytes());
            ctx.update(f.digest.as_ref().map_or(&[0u8; 32][..], |d| &d[..]));
        }
        Sources {
            config: config.to_path_buf(),
            files,
            hash: hex(ctx.finish().as_ref()),
            config_digest: Some(sha256(src)),
        }
    }

    /// The contents each non-secret file had when it was read (the config file first).
    pub fn digests(&self) -> impl Iterator<Item = (&Path, [u8; 32])> {
        let config = self.config_digest.map(|d| (self.config.as_path(), d));
        config.into_iter().chain(
            self.files
                .iter()
                .filter_map(|f| Some((f.path.as_path(), f.digest?))),
        )
    }

    /// Every path to watch: the config file first, then the files it names.
    pub fn watched(&self) -> impl Iterator<Item = (&Path, bool)> {
        std::iter::once((self.config.as_path(), false))
            .chain(self.files.iter().map(|f| (f.path.as_path(), f.secret)))
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_covers_config_and_named_files_but_not_secret_contents() {
        let file = |path: &str, secret: bool, d: u8| SourceFile {
            path: path.into(),
            secret,
            digest: (!secret).then_some([d; 32]),
        };
        let base = Sources::new(Path::new("g.toml"), b"a", vec![file("c.pem", false, 1)]);
        let same = Sources::new(Path::new("g.toml"), b"a", vec![file("c.pem", false, 1)]);
        assert_eq!(base.hash, same.hash);
        assert_eq!(base.hash.len(), 64);
        let cert_changed = Sources::new(Path::new("g.toml"), b"a", vec![file("c.pem", false, 2)]);
        assert_ne!(base.hash, cert_changed.hash);
        let config_changed = Sources::new(Path::new("g.toml"), b"b", vec![file("c.pem", false, 1)]);
        assert_ne!(base.hash, config_changed.hash);
        let with_secret = Sources::new(
            Path::new("g.toml"),
            b"a",
            vec![file("c.pem", false, 1), file("k.pem", true, 0)],
        );
        assert_eq!(base.hash, with_secret.hash, "secret files are not hashed");
    }

    #[test]
    fn recording_collects_each_path_once_and_secrets_without_digest() {
        let ((), files) = recording(|| {
            record(Path::new("a.pem"), false, Some(b"x"));
            record(Path::new("a.pem"), false, Some(b"x"));
            record(Path::new("k.pem"), true, Some(b"secret"));
            record(Path::new("missing.pem"), false, None);
        });
        assert_eq!(files.len(), 3);
        assert_eq!(files[0].digest, Some(sha256(b"x")));
        assert_eq!(files[1].digest, None);
        assert!(files[1].secret);
        assert_eq!(files[2].digest, None);
        // Outside a recording nothing is kept.
        record(Path::new("b.pem"), false, Some(b"y"));
        let ((), none) = recording(|| {});
        assert!(none.is_empty());
    }
}
