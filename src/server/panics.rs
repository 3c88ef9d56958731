//! Panics on the answer path: caught where they happen (the dispatcher around the chain,
//! `transport::reply_all` around each message), logged once with their message and where they
//! happened, counted in `coredns_panics_total`, answered SERVFAIL.
//!
//! What the standard panic hook would add is a second report on stderr and, with
//! `RUST_BACKTRACE` set, a backtrace captured and symbolized for every panic — milliseconds to
//! seconds of CPU (the first symbolization reads the binary's debug info) for each query a
//! client can send at will. So a panic inside [`quiet`] skips that hook: [`install`] puts one in
//! front of it that only keeps the panic's location for [`take_location`]. Every other panic
//! (start-up, a reader loop, a watch task) goes to the hook that was there before, unchanged.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::sync::Once;

thread_local! {
    /// How many [`quiet`] polls are running on this thread (they nest: transport, dispatcher).
    static QUIET: Cell<u32> = const { Cell::new(0) };
    /// Where the last quiet panic on this thread happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs the hook, once per process; the hook found then keeps every panic outside [`quiet`].
pub(crate) fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) == 0 {
                previous(info);
                return;
            }
            let at = info.location().map(|l| l.to_string());
            LOCATION.with(|l| *l.borrow_mut() = at);
        }));
    });
}

/// Where the last panic caught on this thread inside [`quiet`] happened (`file:line:col`).
/// The guard that catches it runs in the same poll, on the same thread.
pub(crate) fn take_location() -> Option<String> {
    LOCATION.with(|l| l.borrow_mut().take())
}

/// Polls `f` with the hook quiet: for futures whose panics the caller catches and reports.
pub(crate) async fn quiet<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    std::future::poll_fn(move |cx| {
        let _quiet = Quiet::enter();
        f.as_mut().poll(cx)
    })
    .await
}

/// Calls `f` with the hook quiet and catches its panic: [`quiet`] for synchronous code (the
/// fast path; another crate's code reading untrusted input, such as the zone file scanner).
/// The caller reports the payload (with [`take_location`]) or turns it into an error.
pub(crate) fn catch_quiet<R>(f: impl FnOnce() -> R) -> std::thread::Result<R> {
    let _quiet = Quiet::enter();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
}

/// Marks this thread quiet while alive; unwinding drops it after the hook has run.
struct Quiet;

impl Quiet {
    fn enter() -> Self {
        QUIET.with(|q| q.set(q.get() + 1));
        Self
    }
}

impl Drop for Quiet {
    fn drop(&mut self) {
        QUIET.with(|q| q.set(q.get().saturating_sub(1)));
    }
}

#[cfg(test)]
mod tests {
    use std::panic::AssertUnwindSafe;

    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn a_quiet_panic_keeps_its_location_and_the_thread_is_loud_again_after() {
        install();
        let caught = AssertUnwindSafe(quiet(async { panic!("boom") }))
            .catch_unwind()
            .now_or_never()
            .expect("ready");
        assert!(caught.is_err());
        let at = take_location().expect("the hook kept the location");
        assert!(at.starts_with("src/server/panics.rs:"), "{at}");
        assert_eq!(
            QUIET.with(Cell::get),
            0,
            "the guard was dropped while unwinding"
        );
        assert_eq!(take_location(), None);
    }
}
