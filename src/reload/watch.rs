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
        WatchSet {
            enabled: serving.reload.watch && live.is_some(),
            interval: serving.reload.watch_interval,
            files,
        }
    }
}

/// What a file looks like now: `None` when it cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
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

/// Runs until `set`'s sender is gone: every interval, compares the files with what they looked
/// like when the serving (or last refused) configuration was read, and asks for one reload per
/// settled change.
pub async fn run(mut set: watch::Receiver<WatchSet>, reload: ReloadHandle) {
    let mut current = set.borrow_and_update().clone();
    let mut baseline = look_all(&current).await;
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
                baseline = look_all(&current).await;
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
