//! Reload without a signal: the config file and every file it names are looked at every
//! `[reload] watch_interval`, and a change that has settled (the same on two looks in a row)
//! asks for a reload.
//!
//! Polling rather than inotify: it needs no new crate, and it sees every way a file changes
//! under a path. Kubernetes updates a mounted ConfigMap or Secret by pointing the `..data`
//! symlink at a new directory (the path now resolves to another inode); cert-manager and ACME
//! clients replace files in place or rename new ones over them (size, mtime or inode change,
//! and a non-secret file's contents are compared too). A `subPath` mount is a bind mount of
//! one file taken when the pod starts: it never changes, so nothing is ever seen there.
//!
//! Never reads a secret file: secret files are compared by their metadata only.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::watch;

use super::{ReloadHandle, Trigger};
use crate::config::{Config, Sources};

/// What to look at, and how often.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchSet {
    pub enabled: bool,
    pub interval: Duration,
    /// (path, is a secret).
    pub files: Vec<(PathBuf, bool)>,
    /// What the files looked like just before the reload that published this set read them:
    /// the watcher compares with this, so a change made while the reload ran is not missed.
    pub before: Fingerprints,
    /// The contents the non-secret files had when last read (by the serving configuration's
    /// load, or a refused attempt's): a file that differs already when the watcher first looks
    /// (it changed right after that read) is a change too.
    pub loaded: Vec<(PathBuf, [u8; 32])>,
}

/// What some files looked like at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprints(Vec<(PathBuf, Option<Seen>)>);

impl Fingerprints {
    /// Looks at `files` now (off the runtime's threads).
    pub async fn take(files: &[(PathBuf, bool)]) -> Fingerprints {
        let files = files.to_vec();
        let seen = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|(p, s)| {
                    let seen = look(&p, s);
                    (p, seen)
                })
                .collect()
        });
        Fingerprints(seen.await.unwrap_or_default())
    }

    fn get(&self, path: &Path) -> Option<&Option<Seen>> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, s)| s)
    }
}

impl WatchSet {
    /// The files of the serving configuration (`live`), and of a refused attempt.
    pub fn of(serving: &Config, live: Option<&Sources>, attempted: Option<&Sources>) -> WatchSet {
        let mut files: Vec<(PathBuf, bool)> = Vec::new();
        for sources in [live, attempted].into_iter().flatten() {
            for (path, secret) in sources.watched() {
                if !files.iter().any(|(p, _)| p == path) {
                    files.push((path.to_path_buf(), secret));
                }
            }
        }
        // What the last read saw: a refused attempt's files over the serving ones.
        let mut loaded: Vec<(PathBuf, [u8; 32])> = Vec::new();
        for sources in [attempted, live].into_iter().flatten() {
            for (path, digest) in sources.digests() {
                if !loaded.iter().any(|(p, _)| p == path) {
                    loaded.push((path.to_path_buf(), digest));
                }
            }
        }
        WatchSet {
            enabled: serving.reload.watch && live.is_some(),
            interval: serving.reload.watch_interval,
            files,
            before: Fingerprints::default(),
            loaded,
        }
    }

    pub fn with_before(mut self, before: Fingerprints) -> WatchSet {
        self.before = before;
        self
    }
}

/// What a file looks like now: `None` when it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    dev: u64,
    ino: u64,
    len: u64,
    modified: Option<std::time::SystemTime>,
    ctime: (i64, i64),
    digest: Option<[u8; 32]>,
}

fn look(path: &Path, secret: bool) -> Option<Seen> {
    // Follows symlinks: a `..data` swap shows as another inode behind the same path.
    let meta = std::fs::metadata(path).ok()?;
    let digest = if secret {
        None
    } else {
        Some(crate::config::sources::sha256(&std::fs::read(path).ok()?))
    };
    #[cfg(unix)]
    let (dev, ino, ctime) = {
        use std::os::unix::fs::MetadataExt as _;
        (meta.dev(), meta.ino(), (meta.ctime(), meta.ctime_nsec()))
    };
    #[cfg(not(unix))]
    let (dev, ino, ctime) = (0, 0, (0, 0));
    Some(Seen {
        dev,
        ino,
        len: meta.len(),
        modified: meta.modified().ok(),
        ctime,
        digest,
    })
}

async fn look_all(set: &WatchSet) -> Vec<Option<Seen>> {
    let files = set.files.clone();
    tokio::task::spawn_blocking(move || files.iter().map(|(p, s)| look(p, *s)).collect())
        .await
        .unwrap_or_default()
}

/// The baseline for a new set: each file as it was before the reload read it where that is
/// known, else as it is now; and "unknown" (`None`, so any readable file differs from it)
/// where what is there now is not what the serving configuration read.
async fn baseline_of(set: &WatchSet) -> Vec<Option<Seen>> {
    let now = look_all(set).await;
    set.files
        .iter()
        .zip(now)
        .map(|((path, _), now)| {
            let seen = set.before.get(path).cloned().unwrap_or(now);
            let loaded = set.loaded.iter().find(|(p, _)| p == path).map(|(_, d)| d);
            match (&seen, loaded) {
                (Some(s), Some(loaded)) if s.digest.is_some_and(|d| d != *loaded) => None,
                _ => seen,
            }
        })
        .collect()
}

/// Runs until `set`'s sender is gone: every interval, compares the files with what they looked
/// like when the serving (or last refused) configuration was read, and asks for one reload per
/// settled change.
pub async fn run(mut set: watch::Receiver<WatchSet>, reload: ReloadHandle) {
    let mut current = set.borrow_and_update().clone();
    let mut baseline = baseline_of(&current).await;
    let mut pending: Option<Vec<Option<Seen>>> = None;
    loop {
        let wait = if current.enabled {
            current.interval
        } else {
            Duration::from_secs(3600)
        };
        tokio::select! {
            changed = set.changed() => {
                if changed.is_err() {
                    return;
                }
                // A reload happened (or was refused): what it read is the new baseline.
                current = set.borrow_and_update().clone();
                baseline = baseline_of(&current).await;
                pending = None;
                continue;
            }
            _ = tokio::time::sleep(wait) => {}
        }
        if !current.enabled {
            continue;
        }
        let now = look_all(&current).await;
        if now == baseline {
            pending = None;
            continue;
        }
        // Changed: wait for it to settle (a writer may still be half-way through the files).
        if pending.as_ref() == Some(&now) {
            tracing::info!("a watched configuration file changed: reloading");
            pending = None;
            baseline = now;
            reload.request(Trigger::Watch);
        } else {
            pending = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(files: &[(PathBuf, bool)], loaded: Vec<(PathBuf, [u8; 32])>) -> WatchSet {
        WatchSet {
            enabled: true,
            interval: Duration::from_millis(100),
            files: files.to_vec(),
            before: Fingerprints::default(),
            loaded,
        }
    }

    #[tokio::test]
    async fn a_file_changed_between_the_load_and_the_first_look_counts_as_changed() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, "new").unwrap();
        std::fs::write(&key, "secret").unwrap();
        let files = [(cert.clone(), false), (key.clone(), true)];
        let loaded_old = vec![(cert.clone(), crate::config::sources::sha256(b"old"))];
        let baseline = baseline_of(&set(&files, loaded_old)).await;
        assert_eq!(baseline[0], None, "differs from what was loaded: a change");
        let secret = baseline[1].as_ref().expect("the key is readable");
        assert!(
            secret.digest.is_none(),
            "a secret is never read for its content"
        );
        let loaded_new = vec![(cert.clone(), crate::config::sources::sha256(b"new"))];
        let baseline = baseline_of(&set(&files, loaded_new)).await;
        assert_eq!(baseline, look_all(&set(&files, Vec::new())).await);
    }

    #[tokio::test]
    async fn what_the_reload_saw_before_reading_is_the_baseline() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "one").unwrap();
        let files = [(key.clone(), true)];
        let before = Fingerprints::take(&files).await;
        // Replaced while the reload was reading (renamed over: another inode).
        std::fs::write(dir.path().join("next"), "two!").unwrap();
        std::fs::rename(dir.path().join("next"), &key).unwrap();
        let baseline = baseline_of(&set(&files, Vec::new()).with_before(before)).await;
        let now = look_all(&set(&files, Vec::new())).await;
        assert_ne!(
            baseline, now,
            "the change made during the reload is still to be seen"
        );
    }
}
