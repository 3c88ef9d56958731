//! CoreDNS-style log lines through `tracing`: `[INFO] plugin/NAME: message`.
//!
//! Every event the process emits goes through [`CoreDnsFormat`], including those of the crates
//! the Kubernetes client is made of (kube, hyper, tower-http, rustls, whose `log` records arrive
//! through tracing-log): each is attributed to a plugin, printed on one line, and a warning or
//! error of the API side that repeats is held back (see [`Repeats`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The name of the span the Kubernetes source runs in; its `api` field is the API server's URL.
pub const KUBERNETES_SPAN: &str = "plugin/kubernetes";

/// Formats events as CoreDNS prints them.
pub struct CoreDnsFormat;

/// The crates of the Kubernetes client stack: their events are the `kubernetes` plugin's.
const KUBE_CRATES: &[&str] = &[
    "kube",
    "kube_client",
    "kube_runtime",
    "kube_core",
    "tower",
    "tower_http",
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "rustls",
    "rustls_platform_verifier",
    "rustls_native_certs",
];

/// The plugin an event belongs to, from its target: `plugin/NAME` targets as they are, our
/// modules by folder, the Kubernetes client's crates as `plugin/kubernetes`; `None` for the
/// server's own lines (CoreDNS prints those without a plugin, e.g. `[INFO] Reloading`).
pub fn plugin_of(target: &str) -> Option<String> {
    if target.starts_with("plugin/") {
        return Some(target.to_string());
    }
    let mut path = target.split("::");
    let krate = path.next().unwrap_or_default();
    if KUBE_CRATES.contains(&krate) {
        return Some(KUBERNETES_SPAN.to_string());
    }
    if krate == "clusterdns" {
        return match (path.next(), path.next()) {
            (Some("kube"), _) => Some(KUBERNETES_SPAN.to_string()),
            (Some("plugins"), Some("loop_detect")) => Some("plugin/loop".to_string()),
            (Some("plugins"), Some(name)) if !name.ends_with(".rs") => {
                Some(format!("plugin/{name}"))
            }
            _ => None,
        };
    }
    None
}

impl<S, N> FormatEvent<S, N> for CoreDnsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let level = match *meta.level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        // The innermost `plugin/…` span names the plugin of a foreign crate's event (a hyper
        // or rustls event while the Kubernetes source polls its requests); its `api` field is
        // the endpoint.
        let mut span_plugin = None;
        let mut api = None;
        if let Some(scope) = ctx.event_scope() {
            for span in scope {
                if span_plugin.is_none() && span.name().starts_with("plugin/") {
                    span_plugin = Some(span.name().to_string());
                }
                if api.is_none() {
                    if let Some(f) = span.extensions().get::<FormattedFields<N>>() {
                        api = field(f, "api").map(str::to_string);
                    }
                }
            }
        }
        let target = meta.target();
        let plugin = if target.starts_with("plugin/") {
            Some(target.to_string())
        } else {
            span_plugin.or_else(|| plugin_of(target))
        };
        let mut msg = String::new();
        ctx.field_format()
            .format_fields(Writer::new(&mut msg), event)?;
        let warning = *meta.level() <= Level::WARN;
        if let Some(api) = api.filter(|a| warning && !msg.contains(a.as_str())) {
            msg.push_str(&format!(" (API {api})"));
        }
        // One event, one line.
        if msg.contains(['\n', '\r']) {
            msg = msg.replace("\r\n", " ").replace(['\n', '\r'], " ");
        }
        if warning && plugin.as_deref().is_some_and(|p| p == KUBERNETES_SPAN) {
            let key = format!("{level} {msg}");
            match REPEATS.lock().map(|mut r| {
                r.get_or_insert_with(Repeats::default)
                    .check(&key, Instant::now())
            }) {
                Ok(Verdict::Hold) => return Ok(()),
                Ok(Verdict::Print { held }) if held > 0 => {
                    msg.push_str(&format!(" ({held} more since the last such line)"));
                }
                _ => {}
            }
        }
        write!(w, "[{level}] ")?;
        if let Some(p) = plugin {
            write!(w, "{p}: ")?;
        }
        writeln!(w, "{msg}")
    }
}

/// An error and its sources as one line, `outer: inner: root`, each source's text given once
/// (kube's errors repeat their source in their own text).
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// The value of `name=` in a span's formatted fields (`api=http://… other=…`).
fn field<'a>(fields: &'a str, name: &str) -> Option<&'a str> {
    fields
        .split(' ')
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim_matches('"'))
}

static REPEATS: Mutex<Option<Repeats>> = Mutex::new(None);

/// Whether a line is printed now.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Print it; `held` lines like it were held back since it was last printed.
    Print {
        /// Lines held back.
        held: u32,
    },
    /// Hold it back.
    Hold,
}

/// Holds back repeats of the same warning or error of the API side: after a line is printed,
/// the same line is printed again no sooner than one back-off step later, the step doubling
/// from 1 s to 30 s (kube-runtime's watcher back-off: 0.8 s doubling to 30 s); a line not seen
/// for two minutes (when kube-runtime resets its back-off) starts over. So an API outage logs
/// each distinct failure at most once per retry of the watcher, however the retries are timed.
#[derive(Default)]
pub struct Repeats {
    lines: HashMap<String, Seen>,
}

struct Seen {
    printed: Instant,
    last: Instant,
    step: Duration,
    held: u32,
}

const FIRST_STEP: Duration = Duration::from_secs(1);
const MAX_STEP: Duration = Duration::from_secs(30);
const RESET: Duration = Duration::from_secs(120);

impl Repeats {
    /// Decides for `line` seen at `now`.
    pub fn check(&mut self, line: &str, now: Instant) -> Verdict {
        if self.lines.len() > 1024 {
            self.lines
                .retain(|_, s| now.saturating_duration_since(s.last) < RESET);
        }
        let Some(s) = self.lines.get_mut(line) else {
            self.lines.insert(
                line.to_string(),
                Seen {
                    printed: now,
                    last: now,
                    step: FIRST_STEP,
                    held: 0,
                },
            );
            return Verdict::Print { held: 0 };
        };
        if now.saturating_duration_since(s.last) >= RESET {
            *s = Seen {
                printed: now,
                last: now,
                step: FIRST_STEP,
                held: 0,
            };
            return Verdict::Print { held: 0 };
        }
        s.last = now;
        if now.saturating_duration_since(s.printed) < s.step {
            s.held += 1;
            return Verdict::Hold;
        }
        let held = std::mem::take(&mut s.held);
        s.printed = now;
        s.step = (s.step * 2).min(MAX_STEP);
        Verdict::Print { held }
    }
}
/// Installs the global subscriber: INFO and up to standard output, hickory's per-request
/// logging filtered to warnings, kube-client's per-request failure lines off (the watcher
/// reports each failure itself, naming the kind and the API). `RUST_LOG` overrides.
pub fn init() {
    QUERY_LINES.store(true, std::sync::atomic::Ordering::Relaxed);
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(
            "info,hickory_server=warn,hickory_proto=warn,kube_client::client::builder=off",
        )
    });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .event_format(CoreDnsFormat)
        .with_writer(std::io::stdout)
        .try_init();
}

/// Whether query lines go to standard output: set by [`init`] (the binary). A program that
/// embeds the server without installing our logging (the tests) gets none, as with `tracing`
/// and no subscriber.
static QUERY_LINES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

thread_local! {
    /// Query lines a UDP reader collected during its current batch.
    static LINES: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// Writes `[INFO] line` (a `log` plugin line) to standard output. On a thread that collects
/// ([`collect_lines`]: the UDP readers) the line waits for [`flush_lines`] at the end of the
/// batch, so a batch of up to 32 answers costs one `write` instead of 32; elsewhere it is
/// written at once. Query lines bypass `tracing`: formatting each one twice cost more than the
/// answer.
pub fn query_line(line: &str) {
    use std::io::Write;
    if !QUERY_LINES.load(std::sync::atomic::Ordering::Relaxed) {
        return;
    }
    let rest = LINES.with(|cell| {
        let mut slot = cell.borrow_mut();
        let Some(buf) = slot.as_mut() else {
            return true;
        };
        buf.extend_from_slice(b"[INFO] ");
        buf.extend_from_slice(line.as_bytes());
        buf.push(b'\n');
        if buf.len() >= 64 * 1024 {
            let _ = std::io::stdout().lock().write_all(buf);
            buf.clear();
        }
        false
    });
    if rest {
        let _ = writeln!(std::io::stdout().lock(), "[INFO] {line}");
    }
}

/// Makes this thread collect query lines until [`flush_lines`].
pub fn collect_lines() {
    LINES.with(|cell| *cell.borrow_mut() = Some(Vec::with_capacity(8 * 1024)));
}

/// Writes the query lines this thread collected, if any.
pub fn flush_lines() {
    use std::io::Write;
    LINES.with(|cell| {
        if let Some(buf) = cell.borrow_mut().as_mut() {
            if !buf.is_empty() {
                let _ = std::io::stdout().lock().write_all(buf);
                buf.clear();
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_of_targets() {
        for (target, want) in [
            ("plugin/errors", Some("plugin/errors")),
            ("kube_client::client::builder", Some("plugin/kubernetes")),
            ("kube_runtime::watcher", Some("plugin/kubernetes")),
            (
                "hyper_util::client::legacy::connect::http",
                Some("plugin/kubernetes"),
            ),
            (
                "rustls_platform_verifier::verification::others",
                Some("plugin/kubernetes"),
            ),
            ("clusterdns::kube::watch", Some("plugin/kubernetes")),
            (
                "clusterdns::plugins::forward::handler",
                Some("plugin/forward"),
            ),
            ("clusterdns::plugins::loop_detect", Some("plugin/loop")),
            ("clusterdns::server::dispatch", None),
            ("clusterdns", None),
            ("hickory_server::server", None),
        ] {
            assert_eq!(plugin_of(target).as_deref(), want, "{target}");
        }
    }

    #[test]
    fn repeats_are_held_for_a_doubling_step() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut r = Repeats::default();
        let print = |held| Verdict::Print { held };
        assert_eq!(r.check("a", at(0)), print(0));
        assert_eq!(r.check("b", at(10)), print(0), "another line is not held");
        assert_eq!(r.check("a", at(800)), Verdict::Hold);
        assert_eq!(r.check("a", at(1000)), print(1));
        assert_eq!(r.check("a", at(2900)), Verdict::Hold, "step now 2 s");
        assert_eq!(r.check("a", at(3000)), print(1));
        assert_eq!(r.check("a", at(6999)), Verdict::Hold, "step now 4 s");
        assert_eq!(r.check("a", at(7000)), print(1));
        // The step stops at 30 s.
        let mut t = 7000;
        for _ in 0..10 {
            t += 30_000;
            assert_eq!(r.check("a", at(t)), print(0));
        }
        assert_eq!(r.check("a", at(t + 29_000)), Verdict::Hold);
        // Two quiet minutes: a fresh start.
        assert_eq!(r.check("a", at(t + 29_000 + 120_000)), print(0));
        assert_eq!(r.check("a", at(t + 29_000 + 120_500)), Verdict::Hold);
    }

    #[test]
    fn error_chain_names_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl fmt::Display for E {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "list failed: client error (Connect)",
            Some(Box::new(E(
                "client error (Connect)",
                Some(Box::new(E("Connection refused (os error 111)", None))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "list failed: client error (Connect): Connection refused (os error 111)"
        );
        assert_eq!(
            field("api=http://10.96.0.1:443 x=1", "api"),
            Some("http://10.96.0.1:443")
        );
        assert_eq!(field("x=1", "api"), None);
    }
}
