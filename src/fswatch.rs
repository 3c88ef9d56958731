//! Noticing that files changed: one polling watcher for the snapshot source, `forward`'s
//! resolv.conf upstreams and `hosts`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

/// The modification times of `paths` (`None` for a file that cannot be read).
pub fn mtimes(paths: &[PathBuf]) -> Vec<Option<SystemTime>> {
    paths.iter().map(|p| mtime(p)).collect()
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Polls the modification times of some files.
pub struct FileWatch {
    paths: Vec<PathBuf>,
    seen: Vec<Option<SystemTime>>,
    every: Duration,
}

impl FileWatch {
    /// Watches `paths`, last read when their times were `seen`, checking every `every`.
    pub fn new(paths: Vec<PathBuf>, seen: Vec<Option<SystemTime>>, every: Duration) -> Self {
        Self { paths, seen, every }
    }

    /// Waits until a file's modification time differs from the last one seen: true, or false
    /// once `stop` is cancelled.
    pub async fn changed(&mut self, stop: &CancellationToken) -> bool {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(self.every) => {}
            }
            let now = mtimes(&self.paths);
            if now != self.seen {
                self.seen = now;
                return true;
            }
        }
    }
}
