//! The connections' own clock: deadlines of keepalive pings, idle and
//! close timeouts, kept by one thread of their own instead of the tokio
//! runtime's timer.
//!
//! Why not the runtime's timer: while any timer is armed in a runtime,
//! every wait of that runtime for I/O is a wait with a timeout
//! (`epoll_wait` with a timeout instead of none), and for each such wait
//! the kernel arms and cancels a high-resolution timer, which in a virtual
//! machine reprograms the virtual timer device each time. A connection's
//! keepalive deadline is armed for as long as the connection is open, so a
//! busy server paid that on every wait, for deadlines seconds away:
//! measured on a 2-core VM, an echo server with one connection spent
//! 12.3-12.9 µs of kernel time per message with the keepalive timer in the
//! runtime and 11.5-11.8 µs without it (same run, `ws bench -c 1 -s 16`),
//! and echoed about 3 % fewer messages per second.
//!
//! These deadlines need no precision (the shortest sensible one is a
//! fraction of a second), and move rarely: a keepalive deadline moves
//! later with every read, and an [`Alarm`] registered for an earlier time
//! stays registered (it wakes early, once, and registers again). So a busy
//! connection touches this clock about once per ping interval, and one
//! thread serves every connection of the process, sleeping until the
//! earliest deadline.
//!
//! Deadlines follow the real clock (`std::time::Instant`), not tokio's
//! (which a test can pause). If the thread cannot be started, an alarm
//! falls back to the runtime's timer.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future as _;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Cancelled entries kept in the heap before it is cleaned, at least.
const MIN_CLEAN: usize = 64;

/// The clock of the process.
static CLOCK: Clock = Clock {
    state: Mutex::new(State {
        heap: BinaryHeap::new(),
        seq: 0,
        cancelled: 0,
        thread: false,
        sleeping_until: None,
    }),
    wake: Condvar::new(),
};

struct Clock {
    state: Mutex<State>,
    /// Tells the thread that the earliest deadline changed.
    wake: Condvar,
}

struct State {
    /// Registered deadlines, earliest first, cancelled ones included.
    heap: BinaryHeap<Reverse<Item>>,
    /// Orders entries of one deadline (and makes items comparable).
    seq: u64,
    /// Cancelled entries still in the heap.
    cancelled: usize,
    /// Whether the thread runs.
    thread: bool,
    /// The deadline the thread sleeps until; `None` while the heap is empty
    /// (or the thread is awake).
    sleeping_until: Option<Instant>,
}

struct Item {
    at: Instant,
    seq: u64,
    entry: Arc<Entry>,
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// One registration: shared by the alarm and the heap.
#[derive(Default)]
struct Entry {
    state: Mutex<EntryState>,
}

#[derive(Default)]
struct EntryState {
    waker: Option<Waker>,
    /// Its deadline passed and the thread took it out of the heap.
    fired: bool,
    /// Its alarm no longer waits for it (it stays in the heap until due or
    /// cleaned).
    cancelled: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code that can panic runs under these locks but a waker's clone or
    // drop; the state stays consistent even then.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Clock {
    /// Register `entry` for `at`; false if the thread cannot be started.
    fn register(&'static self, at: Instant, entry: Arc<Entry>) -> bool {
        let mut st = lock(&self.state);
        if !st.thread {
            let spawned = std::thread::Builder::new()
                .name("ws-net-clock".into())
                .spawn(move || self.run());
            if spawned.is_err() {
                return false;
            }
            st.thread = true;
        }
        st.seq += 1;
        let seq = st.seq;
        st.heap.push(Reverse(Item { at, seq, entry }));
        if st.sleeping_until.is_none_or(|t| at < t) {
            self.wake.notify_one();
        }
        true
    }

    /// An alarm stopped waiting for `entry`.
    fn cancel(&self, entry: &Entry) {
        let mut st = lock(&self.state);
        {
            let mut e = lock(&entry.state);
            e.waker = None;
            if e.fired || e.cancelled {
                return;
            }
            e.cancelled = true;
        }
        st.cancelled += 1;
        // Connections that close leave their entries behind: clean them up
        // once they are half the heap, so it stays bounded by twice the
        // registrations alive (each cleaning is paid by as many cancels).
        if st.cancelled >= MIN_CLEAN && st.cancelled * 2 >= st.heap.len() {
            st.heap
                .retain(|Reverse(item)| !lock(&item.entry.state).cancelled);
            st.cancelled = 0;
        }
    }

    /// The thread: fire what is due, sleep until the next deadline.
    fn run(&self) {
        let mut due = Vec::new();
        let mut st = lock(&self.state);
        loop {
            st.sleeping_until = None;
            let now = Instant::now();
            while let Some(Reverse(item)) = st.heap.peek() {
                if item.at > now {
                    break;
                }
                let Some(Reverse(item)) = st.heap.pop() else {
                    break;
                };
                let mut e = lock(&item.entry.state);
                if e.cancelled {
                    st.cancelled -= 1;
                    continue;
                }
                e.fired = true;
                due.extend(e.waker.take());
            }
            if !due.is_empty() {
                // Wake outside the lock: a waker may run a task at once.
                drop(st);
                for w in due.drain(..) {
                    w.wake();
                }
                st = lock(&self.state);
                continue;
            }
            st = match st.heap.peek() {
                Some(Reverse(item)) => {
                    let at = item.at;
                    st.sleeping_until = Some(at);
                    let wait = at.saturating_duration_since(now);
                    self.wake
                        .wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// Waits for a deadline that may change between waits: keep one per task
/// and poll it with the current deadline. Dropping it cancels the wait.
#[derive(Default)]
pub(crate) struct Alarm {
    reg: Option<Registration>,
    /// The runtime's timer, when the clock's thread cannot be started.
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

struct Registration {
    at: Instant,
    entry: Arc<Entry>,
}

impl Alarm {
    /// Ready once `deadline` has passed; never for `None`. Wakes the task
    /// at most once before the deadline (when it was registered for an
    /// earlier one). Cancel-safe.
    pub(crate) fn poll_until(
        &mut self,
        cx: &mut Context<'_>,
        deadline: Option<Instant>,
    ) -> Poll<()> {
        // (A registration for an earlier deadline, or none, is left to
        // fire: one spurious wake-up.)
        let Some(deadline) = deadline else {
            return Poll::Pending;
        };
        if let Some(reg) = &self.reg {
            if reg.at <= deadline {
                let mut e = lock(&reg.entry.state);
                if !e.fired {
                    match &e.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        _ => e.waker = Some(cx.waker().clone()),
                    }
                    return Poll::Pending;
                }
            }
        }
        let now = Instant::now();
        if now >= deadline {
            return Poll::Ready(());
        }
        if let Some(old) = self.reg.take() {
            CLOCK.cancel(&old.entry);
        }
        let entry = Arc::new(Entry::default());
        lock(&entry.state).waker = Some(cx.waker().clone());
        if CLOCK.register(deadline, entry.clone()) {
            self.fallback = None;
            self.reg = Some(Registration {
                at: deadline,
                entry,
            });
            return Poll::Pending;
        }
        let at = tokio::time::Instant::from_std(deadline);
        match &mut self.fallback {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.fallback = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        match self.fallback.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(()),
            _ => Poll::Pending,
        }
    }

    /// Wait until `deadline` has passed (forever for `None`). Cancel-safe.
    pub(crate) async fn until(&mut self, deadline: Option<Instant>) {
        std::future::poll_fn(|cx| self.poll_until(cx, deadline)).await
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            CLOCK.cancel(&reg.entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fires_at_the_deadline() {
        let mut alarm = Alarm::default();
        let start = Instant::now();
        alarm.until(Some(start + Duration::from_millis(50))).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[tokio::test]
    async fn a_past_deadline_is_ready_at_once() {
        let mut alarm = Alarm::default();
        let past = Instant::now() - Duration::from_millis(1);
        std::future::poll_fn(|cx| {
            assert!(alarm.poll_until(cx, Some(past)).is_ready());
            Poll::Ready(())
        })
        .await;
        assert!(alarm.reg.is_none(), "nothing registered");
    }

    #[tokio::test]
    async fn none_never_fires() {
        let mut alarm = Alarm::default();
        let r = tokio::time::timeout(Duration::from_millis(50), alarm.until(None)).await;
        assert!(r.is_err());
    }

    /// A later deadline keeps the earlier registration, which wakes the
    /// task once; the alarm then waits the rest.
    #[tokio::test]
    async fn a_later_deadline_waits_the_whole_time() {
        let mut alarm = Alarm::default();
        let start = Instant::now();
        std::future::poll_fn(|cx| {
            assert!(alarm
                .poll_until(cx, Some(start + Duration::from_millis(20)))
                .is_pending());
            Poll::Ready(())
        })
        .await;
        let first = alarm.reg.as_ref().map(|r| r.entry.clone()).unwrap();
        alarm.until(Some(start + Duration::from_millis(80))).await;
        assert!(start.elapsed() >= Duration::from_millis(80));
        assert!(lock(&first.state).fired, "the first registration fired");
    }

    /// An earlier deadline replaces the registration, and the replaced
    /// one no longer holds the task's waker.
    #[tokio::test]
    async fn an_earlier_deadline_re_registers() {
        let mut alarm = Alarm::default();
        let start = Instant::now();
        std::future::poll_fn(|cx| {
            assert!(alarm
                .poll_until(cx, Some(start + Duration::from_secs(3600)))
                .is_pending());
            Poll::Ready(())
        })
        .await;
        let first = alarm.reg.as_ref().map(|r| r.entry.clone()).unwrap();
        alarm.until(Some(start + Duration::from_millis(30))).await;
        let took = start.elapsed();
        assert!(took < Duration::from_secs(5), "{took:?}");
        let e = lock(&first.state);
        assert!(e.cancelled && e.waker.is_none());
    }

    /// Dropped alarms leave no waker behind, and their entries are cleaned
    /// out of the heap: it stays bounded however many connections come
    /// and go with far deadlines.
    #[tokio::test]
    async fn dropped_alarms_are_cleaned_up() {
        let far = Instant::now() + Duration::from_secs(3600);
        for _ in 0..10 * MIN_CLEAN {
            let mut alarm = Alarm::default();
            std::future::poll_fn(|cx| {
                assert!(alarm.poll_until(cx, Some(far)).is_pending());
                Poll::Ready(())
            })
            .await;
        }
        // Other tests run beside this one, each with at most a few live
        // registrations.
        let len = lock(&CLOCK.state).heap.len();
        assert!(len <= 2 * MIN_CLEAN + 16, "{len} entries kept");
    }

    /// Many alarms, due at once, on a multi-threaded runtime: each fires.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_alarms_fire() {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            tasks.push(tokio::spawn(async move {
                let mut alarm = Alarm::default();
                alarm
                    .until(Some(start + Duration::from_millis(20 + i % 7)))
                    .await;
            }));
        }
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("every alarm fires")
                .unwrap();
        }
    }
}
