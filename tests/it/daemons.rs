//! Real servers the tests run next to ours: knotd (for `file`) and etcd (for `etcd`), each on
//! 127.0.0.1 ephemeral ports with its data in a temporary directory, killed when dropped.
//! A missing binary fails the test with what to install; nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of `bin` (searched in PATH and the sbin directories), or a panic naming the Debian
/// package that provides it.
pub fn require(bin: &str, package: &str) -> PathBuf {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path
        .split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/local/sbin"])
    {
        let p = Path::new(dir).join(bin);
        if p.is_file() {
            return p;
        }
    }
    panic!("{bin} is not installed: this test needs it (apt-get install {package}; .ci/run does)")
}

/// A child process killed (and reaped) on drop, with its temporary directory.
pub struct Daemon {
    child: Child,
    /// Where its configuration and data live.
    pub dir: tempfile::TempDir,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` with its output in `dir/NAME.log`.
    pub fn spawn(mut cmd: Command, dir: tempfile::TempDir, name: &str) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self { child, dir, log }
    }

    /// The log so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics with the log if the process has exited.
    pub fn check_alive(&mut self, name: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{name} exited ({status}):\n{}", self.log_text());
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `ready` every 50 ms for up to `within`; panics with `what` and the daemon's log.
pub async fn wait_until<F, Fut>(d: &mut Daemon, what: &str, within: Duration, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if ready().await {
            return;
        }
        d.check_alive(what);
        if start.elapsed() > within {
            panic!("{what} not ready after {within:?}:\n{}", d.log_text());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
