//! The watchers' back-off: bounded, jittered, and shared by the watchers of one source.
//!
//! kube-runtime's default back-off (client-go's reflector: 800 ms doubling to 30 s, each watcher
//! on its own clock, reset only by that watcher's own next event) left a replica on its last view
//! for up to 92 s after a 60 s API outage: every watcher slept its own long step, and the 410 Gone
//! that greets a watch resumed across the restart cost one more step before the relist. Here:
//!
//! * an error waits 200 ms, doubling to 1 s, plus a random jitter of up to the same again — never
//!   more than 2 s, and the replicas of a Deployment do not retry in step;
//! * an event only the API can have sent (anything but `Init`, which the watcher emits before it
//!   sends its list request) resets the watcher's back-off and, if that watcher had been failing,
//!   wakes every other watcher of the source from its wait: the API is back, so they retry now;
//! * 410 Gone is such an answer too: the relist follows after the first step, and the others wake.
//!
//! A retry every two seconds per kind costs the API little: kube-runtime lists with
//! `resourceVersion=0`, which the API server answers from its watch cache.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use futures_util::{Stream, StreamExt, stream};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

/// The first wait after an error.
const FIRST: Duration = Duration::from_millis(200);
/// The longest wait before jitter (jitter adds up to as much again).
const STEP_MAX: Duration = Duration::from_secs(1);

/// What the watchers of one source share: a counter bumped when a failing watcher gets an answer
/// from the API.
#[derive(Clone)]
pub(super) struct Revive(Arc<watch::Sender<u64>>);

impl Revive {
    pub(super) fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    fn wake(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

fn delays() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(FIRST)
        .with_max_delay(STEP_MAX)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// An error that is the API's answer that the watch must start over with a list.
fn gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::WatchError(s) => s.code == 410,
        watcher::Error::InitialListFailed(kube::Error::Api(s)) => s.code == 410,
        _ => false,
    }
}

struct State<S> {
    inner: Pin<Box<S>>,
    revive: Revive,
    woken: watch::Receiver<u64>,
    delays: ExponentialBackoff,
    /// An error came since the last answer.
    failing: bool,
    /// How long to wait before polling `inner` again.
    wait: Option<Duration>,
}

/// `events` with the back-off described in the module documentation, in place of
/// kube-runtime's `default_backoff()`.
pub(super) fn bounded<K, S>(
    events: S,
    revive: &Revive,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + use<K, S>
where
    K: Send + 'static,
    S: Stream<Item = watcher::Result<Event<K>>> + Send + 'static,
{
    let state = State {
        inner: Box::pin(events),
        revive: revive.clone(),
        woken: revive.0.subscribe(),
        delays: delays(),
        failing: false,
        wait: None,
    };
    stream::unfold(state, |mut st| async move {
        if let Some(wait) = st.wait.take() {
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                Ok(()) = st.woken.changed() => st.delays = delays(),
            }
        }
        let item = st.inner.next().await?;
        match &item {
            Ok(Event::Init) => {}
            Ok(_) => {
                if st.failing {
                    st.failing = false;
                    st.delays = delays();
                    st.revive.wake();
                }
            }
            Err(e) => {
                if gone(e) {
                    st.delays = delays();
                    st.revive.wake();
                }
                // Wake-ups from before this error are not news.
                st.woken.borrow_and_update();
                st.failing = true;
                st.wait = st.delays.next();
            }
        }
        Some((item, st))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;
    use tokio::time::Instant;

    type Item = watcher::Result<Event<u32>>;

    fn channel() -> (mpsc::UnboundedSender<Item>, impl Stream<Item = Item> + Send) {
        let (tx, rx) = mpsc::unbounded_channel();
        let events = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) });
        (tx, events)
    }

    fn err() -> Item {
        Err(watcher::Error::NoResourceVersion)
    }

    fn gone_event() -> Item {
        let status = kube::core::Status {
            code: 410,
            ..Default::default()
        };
        Err(watcher::Error::WatchError(Box::new(status)))
    }

    /// The time each of `n` items takes to come out of `s`.
    async fn gaps(s: &mut (impl Stream<Item = Item> + Unpin), n: usize) -> Vec<Duration> {
        let mut out = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let _item = s.next().await.expect("an item");
            out.push(t.elapsed());
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn errors_wait_200ms_doubling_to_at_most_2s() {
        let (tx, events) = channel();
        for _ in 0..12 {
            tx.send(err()).unwrap();
        }
        let mut s = Box::pin(bounded(events, &Revive::new()));
        let g = gaps(&mut s, 12).await;
        assert_eq!(g[0], Duration::ZERO, "the first error passes at once");
        // Upper bounds are inclusive: tokio's timer rounds a wait up to the millisecond, so a
        // jitter just under the step's own length reaches twice the step.
        let ms = |d: &Duration| d.as_millis();
        assert!((200..=400).contains(&ms(&g[1])), "{g:?}");
        assert!((400..=800).contains(&ms(&g[2])), "{g:?}");
        assert!((800..=1600).contains(&ms(&g[3])), "{g:?}");
        for d in &g[4..] {
            assert!((1000..=2000).contains(&ms(d)), "bounded: {g:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_resets_but_init_is_not_one() {
        let (tx, events) = channel();
        let mut s = Box::pin(bounded(events, &Revive::new()));
        // Init comes before the list request: the waits keep growing across it.
        for _ in 0..4 {
            tx.send(err()).unwrap();
            tx.send(Ok(Event::Init)).unwrap();
        }
        let g = gaps(&mut s, 8).await;
        assert!(
            g[7] >= Duration::from_millis(1000),
            "the fourth wait: {g:?}"
        );
        // A listed object is an answer: the next error waits the first step again.
        tx.send(Ok(Event::InitApply(1))).unwrap();
        tx.send(err()).unwrap();
        tx.send(err()).unwrap();
        let g = gaps(&mut s, 3).await;
        assert!(g[2] <= Duration::from_millis(400), "{g:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn gone_relists_after_the_first_step() {
        let (tx, events) = channel();
        let mut s = Box::pin(bounded(events, &Revive::new()));
        for _ in 0..6 {
            tx.send(err()).unwrap();
        }
        tx.send(gone_event()).unwrap();
        tx.send(Ok(Event::Init)).unwrap();
        let g = gaps(&mut s, 8).await;
        assert!(g[6] >= Duration::from_millis(1000), "at the bound: {g:?}");
        assert!(g[7] <= Duration::from_millis(400), "{g:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_watchers_answer_wakes_the_others() {
        let revive = Revive::new();
        let (a_tx, a_events) = channel();
        let (b_tx, b_events) = channel();
        let mut a = Box::pin(bounded(a_events, &revive));
        let mut b = Box::pin(bounded(b_events, &revive));
        // A has failed long enough to wait at least 1 s before its next try.
        for _ in 0..6 {
            a_tx.send(err()).unwrap();
        }
        gaps(&mut a, 6).await;
        a_tx.send(Ok(Event::InitApply(1))).unwrap();
        // B fails once, then gets an answer 200–400 ms later.
        b_tx.send(err()).unwrap();
        b_tx.send(Ok(Event::InitApply(2))).unwrap();
        let start = Instant::now();
        let (a_next, b_next) = tokio::join!(
            async {
                let item = a.next().await;
                (item, start.elapsed())
            },
            async {
                b.next().await;
                let item = b.next().await;
                (item, start.elapsed())
            }
        );
        assert!(matches!(b_next.0, Some(Ok(Event::InitApply(2)))));
        assert!(matches!(a_next.0, Some(Ok(Event::InitApply(1)))));
        // At most the first step and its jitter (rounded up to the millisecond by tokio).
        assert!(b_next.1 <= Duration::from_millis(400), "{:?}", b_next.1);
        assert_eq!(a_next.1, b_next.1, "A retried when B got its answer");
    }
}
