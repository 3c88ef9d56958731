//! The process-wide readiness set that `/ready` reports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::Monitor;

/// Something that can say whether its plugin is ready (e.g. the kubernetes informers synced).
pub trait Probe: Send + Sync + 'static {
    /// Whether the plugin is ready now.
    fn ready(&self) -> bool;
}

impl<F: Fn() -> bool + Send + Sync + 'static> Probe for F {
    fn ready(&self) -> bool {
        self()
    }
}

struct Entry {
    name: &'static str,
    probe: Arc<dyn Probe>,
    seen_ready: AtomicBool,
}

/// Plugins that report readiness, plus the shutting-down latch.
#[derive(Default)]
pub struct Readiness {
    entries: Mutex<Vec<Entry>>,
    shutting_down: AtomicBool,
    serving: AtomicBool,
}

impl Readiness {
    /// Registers a plugin's probe.
    pub fn register(&self, name: &'static str, probe: Arc<dyn Probe>) {
        self.entries.lock().expect("readiness lock").push(Entry {
            name,
            probe,
            seen_ready: AtomicBool::new(false),
        });
    }

    /// Replaces this set's probes with `staged`'s (a reload's new configuration).
    pub fn adopt(&self, staged: &Readiness) {
        let new = std::mem::take(&mut *staged.entries.lock().expect("readiness lock"));
        *self.entries.lock().expect("readiness lock") = new;
    }

    /// Marks the DNS listeners as open: until then `/ready` answers 503.
    pub fn serving(&self) {
        self.serving.store(true, Ordering::SeqCst);
    }

    /// Marks the process as shutting down: `/ready` answers 503 from now on.
    pub fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
    }

    /// Whether [`Readiness::shut_down`] was called.
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// `Ok(())` when ready, else the sorted names of the plugins that are not (or
    /// `Shutting down`).
    pub fn check(&self, monitor: Monitor) -> Result<(), String> {
        if self.is_shutting_down() {
            return Err("Shutting down".into());
        }
        if !self.serving.load(Ordering::SeqCst) {
            return Err("Starting".into());
        }
        let entries = self.entries.lock().expect("readiness lock");
        let mut not_ready: Vec<&str> = entries
            .iter()
            .filter(|e| {
                if monitor == Monitor::UntilReady && e.seen_ready.load(Ordering::Relaxed) {
                    return false;
                }
                let ok = e.probe.ready();
                if ok {
                    e.seen_ready.store(true, Ordering::Relaxed);
                }
                !ok
            })
            .map(|e| e.name)
            .collect();
        if not_ready.is_empty() {
            return Ok(());
        }
        not_ready.sort_unstable();
        not_ready.dedup();
        Err(not_ready.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_not_ready_plugins_sorted() {
        let r = Readiness::default();
        assert_eq!(r.check(Monitor::UntilReady), Err("Starting".into()));
        r.serving();
        assert_eq!(r.check(Monitor::UntilReady), Ok(()));
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        r.register("kubernetes", Arc::new(move || f.load(Ordering::Relaxed)));
        r.register("erratic", Arc::new(|| false));
        assert_eq!(
            r.check(Monitor::UntilReady),
            Err("erratic,kubernetes".into())
        );
        flag.store(true, Ordering::Relaxed);
        assert_eq!(r.check(Monitor::UntilReady), Err("erratic".into()));
        // until-ready: once ready, never asked again.
        flag.store(false, Ordering::Relaxed);
        assert_eq!(r.check(Monitor::UntilReady), Err("erratic".into()));
        assert_eq!(
            r.check(Monitor::Continuously),
            Err("erratic,kubernetes".into())
        );
        r.shut_down();
        assert_eq!(r.check(Monitor::UntilReady), Err("Shutting down".into()));
    }
}
