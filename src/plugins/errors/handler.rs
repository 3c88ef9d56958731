//! The `errors` handler: logs `RCODE QNAME QTYPE: ERROR` for every error from the chain.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use regex::Regex;

use super::{ErrorsConfig, Level, NAME};
use crate::plugins::fast::{FastQuery, FastStep};
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

struct Rule {
    re: Regex,
    cfg: super::Consolidate,
    count: Arc<AtomicU64>,
}

/// Logs errors, consolidating those that match a `consolidate` pattern.
pub struct Errors {
    rules: Vec<Rule>,
}

impl Errors {
    /// Compiles the configuration.
    pub fn new(cfg: ErrorsConfig) -> Self {
        let rules = cfg
            .consolidate
            .into_iter()
            .map(|c| Rule {
                re: Regex::new(&c.pattern).expect("pattern was checked at setup"),
                cfg: c,
                count: Arc::new(AtomicU64::new(0)),
            })
            .collect();
        Self { rules }
    }

    fn report(&self, line: String, err_text: &str) {
        let Some(rule) = self.rules.iter().find(|r| r.re.is_match(err_text)) else {
            tracing::error!(target: "plugin/errors", "{line}");
            return;
        };
        let n = rule.count.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            if rule.cfg.show_first {
                log_at(rule.cfg.level, &line);
            }
            let count = rule.count.clone();
            let cfg = rule.cfg.clone();
            tokio::spawn(async move {
                tokio::time::sleep(cfg.period).await;
                let n = count.swap(0, Ordering::Relaxed);
                if n > 1 || (n == 1 && !cfg.show_first) {
                    let msg = format!(
                        "{n} errors like '{}' occurred in last {}",
                        cfg.pattern,
                        humantime(cfg.period)
                    );
                    log_at(cfg.level, &msg);
                }
            });
        }
    }
}

/// On shutdown or reload (CoreDNS's `OnShutdown`: `stop`), what is still counted is reported.
impl Drop for Errors {
    fn drop(&mut self) {
        for r in &self.rules {
            let n = r.count.swap(0, Ordering::Relaxed);
            if n > 1 || (n == 1 && !r.cfg.show_first) {
                log_at(
                    r.cfg.level,
                    &format!(
                        "{n} errors like '{}' occurred in last {}",
                        r.cfg.pattern,
                        humantime(r.cfg.period)
                    ),
                );
            }
        }
    }
}

fn log_at(level: Level, msg: &str) {
    match level {
        Level::Error => tracing::error!(target: "plugin/errors", "{msg}"),
        Level::Warning => tracing::warn!(target: "plugin/errors", "{msg}"),
        Level::Info => tracing::info!(target: "plugin/errors", "{msg}"),
        Level::Debug => tracing::debug!(target: "plugin/errors", "{msg}"),
    }
}

/// Go's `time.Duration.String()` for whole seconds and minutes, e.g. `5m0s`, `30s`.
fn humantime(d: std::time::Duration) -> String {
    let s = d.as_secs();
    let ms = d.subsec_millis();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, sec) if ms > 0 => format!("{}s", sec as f64 + f64::from(ms) / 1000.0),
        (0, 0, sec) => format!("{sec}s"),
        (0, m, sec) => format!("{m}m{sec}s"),
        (h, m, sec) => format!("{h}h{m}m{sec}s"),
    }
}

#[async_trait::async_trait]
impl Handler for Errors {
    fn name(&self) -> &'static str {
        NAME
    }

    fn fast(&self, _: &FastQuery<'_>, _: &mut Vec<u8>) -> FastStep {
        // Only errors are logged; the fast path answers none.
        FastStep::Pass
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        match next.run(req).await {
            Ok(r) => Ok(r),
            // `acl … drop` is not an error (CoreDNS's acl returns none).
            Err(e @ HandlerError::Dropped(_)) => Err(e),
            Err(e) => {
                let text = e.to_string();
                let line = format!(
                    "{} {} {}: {}",
                    u16::from(e.rcode()),
                    req.qname(),
                    req.qtype(),
                    text
                );
                self.report(line, &text);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::{Chain, Proto};
    use hickory_proto::rr::{Name, RecordType};
    use std::time::Duration;

    #[test]
    fn go_durations() {
        assert_eq!(humantime(Duration::from_secs(300)), "5m0s");
        assert_eq!(humantime(Duration::from_secs(30)), "30s");
        assert_eq!(humantime(Duration::from_secs(3661)), "1h1m1s");
    }

    #[tokio::test(start_paused = true)]
    async fn passes_errors_through_and_consolidates() {
        let cfg = ErrorsConfig {
            stacktrace: false,
            consolidate: vec![super::super::Consolidate {
                period: Duration::from_secs(60),
                pattern: "no next plugin".into(),
                level: Level::Warning,
                show_first: false,
            }],
        };
        let errors = Arc::new(Errors::new(cfg));
        let chain = Chain::new(vec![errors.clone()]);
        let req = Request::new(
            Name::from_ascii("example.org.").unwrap(),
            RecordType::A,
            "127.0.0.1:1".parse().unwrap(),
            Proto::Udp,
        );
        for _ in 0..3 {
            let e = chain.run(&req).await.unwrap_err();
            assert_eq!(e.to_string(), "plugin/errors: no next plugin found");
        }
        assert_eq!(errors.rules[0].count.load(Ordering::Relaxed), 3);
        tokio::time::sleep(Duration::from_secs(61)).await;
        tokio::task::yield_now().await;
        assert_eq!(
            errors.rules[0].count.load(Ordering::Relaxed),
            0,
            "summary resets the count"
        );
    }

    /// A `tracing` writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    // plugin/errors/errors_test.go: TestStop — errors still counted when the handler stops
    // (CoreDNS's OnShutdown, here the handler's drop: on reload, or when the server releases
    // its chains) are reported: "3 errors like '^error.*!$' occurred in last 2s".
    #[tokio::test]
    async fn test_stop_reports_what_is_counted() {
        let buf = Buf::default();
        let w = buf.clone();
        let sub = tracing_subscriber::fmt()
            .with_writer(move || w.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(sub);
        let cfg = ErrorsConfig {
            stacktrace: false,
            consolidate: vec![super::super::Consolidate {
                period: Duration::from_secs(2),
                pattern: "^error.*!$".into(),
                level: Level::Error,
                show_first: false,
            }],
        };
        let errors = Errors::new(cfg);
        for _ in 0..3 {
            errors.report("2 example.org. A: error!".into(), "error!");
        }
        assert_eq!(errors.rules[0].count.load(Ordering::Relaxed), 3);
        drop(errors);
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(
            out.contains("3 errors like '^error.*!$' occurred in last 2s"),
            "{out}"
        );
    }
}
