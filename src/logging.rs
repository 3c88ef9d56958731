//! CoreDNS-style log lines through `tracing`: `[INFO] plugin/NAME: message`.

use std::fmt;

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats events as CoreDNS prints them.
pub struct CoreDnsFormat;

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
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARNING",
            Level::INFO => "INFO",
            Level::DEBUG | Level::TRACE => "DEBUG",
        };
        write!(w, "[{level}] ")?;
        let target = event.metadata().target();
        if target.starts_with("plugin/") {
            write!(w, "{target}: ")?;
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Installs the global subscriber: INFO and up to standard output, hickory's per-request
/// logging filtered to warnings. `RUST_LOG` overrides.
pub fn init() {
    QUERY_LINES.store(true, std::sync::atomic::Ordering::Relaxed);
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,hickory_server=warn,hickory_proto=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
