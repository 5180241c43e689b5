//! The connections' own clocks: deadlines of keepalive pings, idle and
//! close timeouts, kept apart from the tokio runtime's timer.
//!
//! Why not the runtime's timer: while any timer is armed in a runtime,
//! every wait of that runtime for I/O is a wait with a timeout
//! (`epoll_wait` with a timeout instead of none), and for each such wait
//! the kernel arms and cancels a high-resolution timer, which in a virtual
//! machine reprograms the virtual timer device each time. A connection's
//! keepalive deadline is armed for as long as the connection is open, so a
//! busy server paid that on every wait, for deadlines seconds away (the
//! README's performance section has the measurement).
//!
//! On Linux each runtime gets a clock of its own: a timer file descriptor
//! (`timerfd`) set for the earliest deadline and registered with the
//! runtime's reactor like a socket, and a task that fires what is due when
//! it becomes readable. The runtime then waits for I/O without a timeout,
//! and the process keeps the threads it had: a second thread would make
//! every system call and allocation of a single-threaded server pay for
//! thread safety (glibc's cancellation points and arena locks, the
//! kernel's file table references). The first connection on a tokio TCP socket makes a
//! runtime's clock (the socket shows the runtime has a reactor; tokio
//! panics when a descriptor is registered with a runtime built without
//! I/O, and cannot be asked); connections on other transports use it once
//! it exists. Elsewhere, before that, outside a runtime, or when a timer
//! descriptor cannot be made, one thread serves the process, sleeping
//! until the earliest deadline; if that thread cannot be started either,
//! an alarm falls back to the runtime's timer.
//!
//! These deadlines need no precision (the shortest sensible one is a
//! fraction of a second), and move rarely: a keepalive deadline moves
//! later with every read, and an [`Alarm`] registered for an earlier time
//! stays registered (it wakes early, once, and registers again). So a busy
//! connection touches its clock about once per ping interval.
//!
//! Deadlines follow the real clock (`std::time::Instant`), not tokio's
//! (which a test can pause).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// Cancelled entries kept in the heap before it is cleaned, at least.
const MIN_CLEAN: usize = 64;

/// A heap of deadlines and what wakes whoever fires them.
struct Clock {
    state: Mutex<Deadlines>,
    kind: Kind,
}

enum Kind {
    /// The process's clock thread, told through this that the earliest
    /// deadline changed.
    Thread(Condvar),
    /// A runtime's timer descriptor, read by a task on that runtime.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    Timerfd(Arc<std::os::fd::OwnedFd>),
}

#[derive(Default)]
struct Deadlines {
    /// Registered deadlines, earliest first, cancelled ones included.
    heap: BinaryHeap<Reverse<Item>>,
    /// Orders entries of one deadline (and makes items comparable).
    seq: u64,
    /// Cancelled entries still in the heap.
    cancelled: usize,
    /// The thread was started.
    started: bool,
    /// A runtime's clock whose task is gone (the runtime shut down): it
    /// takes no registrations.
    dead: bool,
    /// The deadline the clock will wake up for: the thread's sleep, or
    /// what the timer descriptor is set for. `None` when it will not wake
    /// up by itself (the heap is empty, or the thread is awake).
    armed: Option<Instant>,
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
    /// Its deadline passed (or its clock stopped) and it left the heap.
    fired: bool,
    /// Its alarm no longer waits for it (it stays in the heap until due or
    /// cleaned).
    cancelled: bool,
}

/// `timeout` from now. A timeout past what an `Instant` can hold (a
/// caller's `Duration::MAX`, "never") is cut to about thirty years, as
/// tokio's timer does.
pub(crate) fn deadline_after(timeout: std::time::Duration) -> Instant {
    const FAR: std::time::Duration = std::time::Duration::from_secs(30 * 365 * 86_400);
    let now = Instant::now();
    now.checked_add(timeout.min(FAR)).unwrap_or(now)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // No code that can panic runs under these locks but a waker's clone or
    // drop; the state stays consistent even then.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The process's clock, served by a thread of its own.
fn process_clock() -> &'static Arc<Clock> {
    static PROCESS: OnceLock<Arc<Clock>> = OnceLock::new();
    PROCESS.get_or_init(|| Arc::new(Clock::new(Kind::Thread(Condvar::new()))))
}

/// The clock for an alarm registered now: the current runtime's, else the
/// process's. `create`: the runtime may be given a clock if it has none
/// (it has a reactor; see [`Alarm::new`]).
fn current_clock(create: bool) -> Arc<Clock> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(clock) = runtime::clock(create) {
        return clock;
    }
    let _ = create;
    process_clock().clone()
}

impl Clock {
    fn new(kind: Kind) -> Self {
        Clock {
            state: Mutex::new(Deadlines::default()),
            kind,
        }
    }

    /// Register `entry` for `at`; false if this clock cannot take it (its
    /// runtime shut down, its thread cannot be started).
    fn register(self: &Arc<Self>, at: Instant, entry: Arc<Entry>) -> bool {
        let mut st = lock(&self.state);
        if st.dead {
            return false;
        }
        if matches!(self.kind, Kind::Thread(_)) && !st.started {
            let clock = self.clone();
            let spawned = std::thread::Builder::new()
                .name("ws-net-clock".into())
                .spawn(move || clock.run_thread());
            if spawned.is_err() {
                return false;
            }
            st.started = true;
        }
        st.seq += 1;
        let seq = st.seq;
        st.heap.push(Reverse(Item { at, seq, entry }));
        if st.armed.is_none_or(|t| at < t) {
            let stopped = self.arm(&mut st, at);
            drop(st);
            stopped.into_iter().for_each(Waker::wake);
        }
        true
    }

    /// Make the clock wake up at `at` (earlier than it would). Returns the
    /// wakers of the alarms to move elsewhere if the clock had to stop, for
    /// the caller to wake once the lock is released (a waker may run its
    /// task at once).
    #[must_use]
    fn arm(&self, st: &mut Deadlines, at: Instant) -> Vec<Waker> {
        match &self.kind {
            // The thread sets `armed` itself when it goes to sleep.
            Kind::Thread(wake) => wake.notify_one(),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            Kind::Timerfd(fd) => {
                if runtime::set(fd, at) {
                    st.armed = Some(at);
                } else {
                    // Cannot happen for a valid descriptor and time; should
                    // it, the clock stops and its alarms move elsewhere.
                    st.dead = true;
                    return fire_all(st);
                }
            }
        }
        Vec::new()
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
        // Cancelled entries at the top of the heap go at once: a finished
        // handshake's deadline is usually earlier than every connection's
        // keepalive deadline, so its entry is there.
        while let Some(Reverse(top)) = st.heap.peek() {
            if !lock(&top.entry.state).cancelled {
                break;
            }
            st.heap.pop();
            st.cancelled -= 1;
        }
        // Others (closed connections') stay behind: clean them up once they
        // are a quarter of the heap, so it stays within 4/3 of the
        // registrations alive (each cleaning, one pass over the heap, is
        // paid by a quarter as many cancels).
        if st.cancelled >= MIN_CLEAN && st.cancelled * 4 >= st.heap.len() {
            st.heap
                .retain(|Reverse(item)| !lock(&item.entry.state).cancelled);
            st.cancelled = 0;
            // And the room a burst of connections left.
            let len = st.heap.len().max(MIN_CLEAN);
            if st.heap.capacity() > 4 * len {
                st.heap.shrink_to(2 * len);
            }
        }
    }

    /// The clock thread: fire what is due, sleep until the next deadline.
    fn run_thread(&self) {
        let Kind::Thread(wake) = &self.kind else {
            return;
        };
        let mut due = Vec::new();
        let mut st = lock(&self.state);
        loop {
            let now = Instant::now();
            let next = expire(&mut st, now, &mut due);
            if !due.is_empty() {
                // Wake outside the lock: a waker may run a task at once.
                drop(st);
                for w in due.drain(..) {
                    w.wake();
                }
                st = lock(&self.state);
                continue;
            }
            st = match next {
                Some(at) => {
                    st.armed = Some(at);
                    let wait = at.saturating_duration_since(now);
                    wake.wait_timeout(st, wait)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => wake.wait(st).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A clock woke up at `now`: it is no longer armed, the entries due leave
/// the heap (their wakers into `due`). Returns the next deadline.
fn expire(st: &mut Deadlines, now: Instant, due: &mut Vec<Waker>) -> Option<Instant> {
    st.armed = None;
    while let Some(Reverse(item)) = st.heap.peek() {
        if item.at > now {
            return Some(item.at);
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
    None
}

/// Empty the heap of a clock that stopped; the wakers of its alarms are
/// returned, for the caller to wake: each alarm then registers again, on a
/// clock that runs.
fn fire_all(st: &mut Deadlines) -> Vec<Waker> {
    let mut wakers = Vec::new();
    for Reverse(item) in st.heap.drain() {
        let mut e = lock(&item.entry.state);
        e.fired = true;
        wakers.extend(e.waker.take());
    }
    st.cancelled = 0;
    st.armed = None;
    wakers
}

/// A runtime's clock: a timer descriptor and the task that reads it.
#[cfg(any(target_os = "linux", target_os = "android"))]
mod runtime {
    use std::os::fd::{AsRawFd, OwnedFd, RawFd};
    use std::sync::{Arc, Mutex, Weak};
    use std::task::Waker;
    use std::time::{Duration, Instant};

    use rustix::time::{
        timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags,
        TimerfdTimerFlags, Timespec,
    };

    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    use tokio::runtime::{Handle, Id};

    use super::{expire, fire_all, lock, Clock, Kind};

    /// The runtimes that have a clock, while they run.
    static RUNTIMES: Mutex<Vec<(Id, Weak<Clock>)>> = Mutex::new(Vec::new());

    /// The current runtime's clock; `None` outside a runtime, or when it
    /// has none and `create` is false. `create` promises that the runtime
    /// has a reactor: tokio panics when a descriptor is registered with a
    /// runtime built without I/O, and offers no way to ask.
    pub(super) fn clock(create: bool) -> Option<Arc<Clock>> {
        let handle = Handle::try_current().ok()?;
        let id = handle.id();
        let mut runtimes = lock(&RUNTIMES);
        let known = runtimes.iter().find(|(i, _)| *i == id);
        if let Some(clock) = known.and_then(|(_, w)| w.upgrade()) {
            if !lock(&clock.state).dead {
                return Some(clock);
            }
        }
        if !create {
            return None;
        }
        // Forget clocks that are gone (each runtime has its own id).
        runtimes.retain(|(i, w)| *i != id && w.strong_count() > 0);
        let made = make(&handle)?;
        runtimes.push((id, Arc::downgrade(&made)));
        Some(made)
    }

    /// A clock for the runtime of `handle`, which has a reactor.
    fn make(handle: &Handle) -> Option<Arc<Clock>> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .ok()?;
        let fd = Arc::new(fd);
        let clock = Arc::new(Clock::new(Kind::Timerfd(fd.clone())));
        let fd = watch(ClockFd(fd)).ok()?;
        // The guard is made here, not in the task: a task dropped before
        // it first runs (its runtime shut down) stops the clock too.
        handle.spawn(tick(Stop(clock.clone()), fd));
        Some(clock)
    }

    /// Set the descriptor to expire at `at` (at once, if past).
    pub(super) fn set(fd: &OwnedFd, at: Instant) -> bool {
        // A zero time would disarm it.
        let wait = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let Ok(value) = Timespec::try_from(wait) else {
            return false;
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: value,
        };
        timerfd_settime(fd, TimerfdTimerFlags::empty(), &spec).is_ok()
    }

    /// What the reactor watches: the clock's descriptor.
    struct ClockFd(Arc<OwnedFd>);

    impl AsRawFd for ClockFd {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_raw_fd()
        }
    }

    /// Register the descriptor with the current runtime's reactor, for
    /// reading.
    ///
    /// The one `unsafe` block of this crate. tokio's safe constructors for
    /// `AsyncFd` are deprecated (they cannot check that the descriptor
    /// stays open), and a clock thread instead would cost every system
    /// call of a single-threaded server (see the module's documentation,
    /// and the echo benchmark at one connection: `ws bench -c 1 -s 16`).
    #[allow(unsafe_code)]
    fn watch(fd: ClockFd) -> std::io::Result<AsyncFd<ClockFd>> {
        // SAFETY: `register_with_interest` needs the descriptor that
        // `as_raw_fd` returns to be open, to refer to the same file, and to
        // be returned by every call, for as long as the `AsyncFd` owns the
        // value. `ClockFd` holds an `Arc<OwnedFd>`: the `OwnedFd` is
        // closed only when its last `Arc` is dropped, the `AsyncFd` holds
        // one until it is dropped (it deregisters first) or gives the value
        // back, and nothing replaces the descriptor in the `Arc` (this module
        // never takes a `&mut` to it), so `as_raw_fd` returns the same open
        // descriptor throughout.
        unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(Into::into)
    }

    /// Marks the clock stopped when its task is dropped (the runtime shut
    /// down), waking its alarms so they move to another clock.
    struct Stop(Arc<Clock>);

    impl Drop for Stop {
        fn drop(&mut self) {
            let mut st = lock(&self.0.state);
            st.dead = true;
            let wakers = fire_all(&mut st);
            drop(st);
            wakers.into_iter().for_each(Waker::wake);
        }
    }

    /// The clock's task: each time the descriptor expires, fire what is
    /// due and set it for the next deadline.
    async fn tick(stop: Stop, fd: AsyncFd<ClockFd>) {
        let clock = &stop.0;
        let mut due = Vec::new();
        loop {
            let Ok(mut ready) = fd.readable().await else {
                return;
            };
            // Reading takes the expiration; nothing to read means it was
            // set again since (to an earlier time): wait for that.
            let read = ready.try_io(|fd| {
                let mut count = [0u8; 8];
                rustix::io::read(&*fd.get_ref().0, &mut count).map_err(std::io::Error::from)
            });
            if read.is_err() {
                continue;
            }
            {
                let mut st = lock(&clock.state);
                if let Some(at) = expire(&mut st, Instant::now(), &mut due) {
                    due.extend(clock.arm(&mut st, at));
                }
            }
            // Wake outside the lock: a waker may run a task at once.
            for w in due.drain(..) {
                w.wake();
            }
        }
    }
}

/// Waits for a deadline that may change between waits: keep one per task
/// and poll it with the current deadline. Dropping it cancels the wait.
pub(crate) struct Alarm {
    /// The runtimes polling it have a reactor: it may give one a clock.
    reactor: bool,
    reg: Option<Registration>,
    /// The runtime's timer, when no clock takes the registration.
    fallback: Option<Pin<Box<tokio::time::Sleep>>>,
}

struct Registration {
    at: Instant,
    entry: Arc<Entry>,
    clock: Arc<Clock>,
}

impl Alarm {
    /// An alarm for a task on a runtime that has a reactor (`reactor`: it
    /// polls a tokio socket), which may then get a clock of its own; any
    /// alarm uses the runtime's clock once it has one, and the process's
    /// thread before.
    pub(crate) fn new(reactor: bool) -> Self {
        Alarm {
            reactor,
            reg: None,
            fallback: None,
        }
    }

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
            old.clock.cancel(&old.entry);
        }
        let entry = Arc::new(Entry::default());
        lock(&entry.state).waker = Some(cx.waker().clone());
        // The clock of the runtime polling it, else the process's thread.
        let current = current_clock(self.reactor);
        let clock = if current.register(deadline, entry.clone()) {
            Some(current)
        } else {
            let process = process_clock();
            (!Arc::ptr_eq(&current, process) && process.register(deadline, entry.clone()))
                .then(|| process.clone())
        };
        if let Some(clock) = clock {
            self.fallback = None;
            self.reg = Some(Registration {
                at: deadline,
                entry,
                clock,
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

/// A deadline passed before the operation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// A deadline for a sequence of steps (a handshake's reads and writes),
/// on the connections' clocks.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    at: Instant,
    /// As for [`Alarm::new`].
    reactor: bool,
}

impl Deadline {
    /// `timeout` from now; `reactor` as for [`Alarm::new`].
    pub(crate) fn after(timeout: std::time::Duration, reactor: bool) -> Self {
        Deadline {
            at: deadline_after(timeout),
            reactor,
        }
    }

    /// `fut`'s output, or [`Elapsed`] if the deadline passes first. Pin
    /// a future that is not `Unpin` where it is (`std::pin::pin!`): the
    /// returned future then holds a pointer to it, not a second copy.
    pub(crate) fn run<F: Future + Unpin>(self, fut: F) -> Timeout<F> {
        Timeout::new(self.at, self.reactor, fut)
    }
}

/// `fut`'s output, or [`Elapsed`] if a deadline passes first; timed by the
/// connections' clocks, so it needs no timer in the runtime. `fut` is
/// polled first: one already done is not failed for a past deadline.
/// Cancel-safe as far as `fut` is.
///
/// A plain struct rather than an `async fn`: an `async fn` keeps its
/// argument and the local it is moved into side by side, and this sits in
/// every connection's driver future (its closing steps), which an
/// `async fn` here made 120 bytes larger.
pub(crate) struct Timeout<F> {
    fut: F,
    alarm: Alarm,
    deadline: Instant,
}

impl<F> Timeout<F> {
    /// `reactor` as for [`Alarm::new`].
    pub(crate) fn new(deadline: Instant, reactor: bool, fut: F) -> Self {
        Timeout {
            fut,
            alarm: Alarm::new(reactor),
            deadline,
        }
    }
}

impl<F: Future + Unpin> Future for Timeout<F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(out) = Pin::new(&mut this.fut).poll(cx) {
            return Poll::Ready(Ok(out));
        }
        this.alarm
            .poll_until(cx, Some(this.deadline))
            .map(|()| Err(Elapsed))
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        if let Some(reg) = self.reg.take() {
            reg.clock.cancel(&reg.entry);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn fires_at_the_deadline(reactor: bool) {
        let mut alarm = Alarm::new(reactor);
        let start = Instant::now();
        alarm.until(Some(start + Duration::from_millis(50))).await;
        let took = start.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    async fn a_past_deadline_is_ready_at_once(reactor: bool) {
        let mut alarm = Alarm::new(reactor);
        let past = Instant::now() - Duration::from_millis(1);
        std::future::poll_fn(|cx| {
            assert!(alarm.poll_until(cx, Some(past)).is_ready());
            Poll::Ready(())
        })
        .await;
        assert!(alarm.reg.is_none(), "nothing registered");
    }

    async fn none_never_fires(reactor: bool) {
        let mut alarm = Alarm::new(reactor);
        let r = tokio::time::timeout(Duration::from_millis(50), alarm.until(None)).await;
        assert!(r.is_err());
    }

    /// A later deadline keeps the earlier registration, which wakes the
    /// task once; the alarm then waits the rest.
    async fn a_later_deadline_waits_the_whole_time(reactor: bool) {
        let mut alarm = Alarm::new(reactor);
        let start = Instant::now();
        std::future::poll_fn(|cx| {
            assert!(alarm
                .poll_until(cx, Some(start + Duration::from_millis(20)))
                .is_pending());
            Poll::Ready(())
        })
        .await;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        assert_eq!(
            matches!(clock_of(&alarm).kind, Kind::Timerfd(_)),
            reactor,
            "the clock of this test"
        );
        let first = alarm.reg.as_ref().map(|r| r.entry.clone()).unwrap();
        alarm.until(Some(start + Duration::from_millis(80))).await;
        assert!(start.elapsed() >= Duration::from_millis(80));
        assert!(lock(&first.state).fired, "the first registration fired");
    }

    /// An earlier deadline replaces the registration, and the replaced
    /// one no longer holds the task's waker.
    async fn an_earlier_deadline_re_registers(reactor: bool) {
        let mut alarm = Alarm::new(reactor);
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
    async fn dropped_alarms_are_cleaned_up(reactor: bool) {
        let far = Instant::now() + Duration::from_secs(3600);
        let mut clock = None;
        for _ in 0..10 * MIN_CLEAN {
            let mut alarm = Alarm::new(reactor);
            std::future::poll_fn(|cx| {
                assert!(alarm.poll_until(cx, Some(far)).is_pending());
                Poll::Ready(())
            })
            .await;
            clock.get_or_insert_with(|| clock_of(&alarm));
        }
        let clock = clock.expect("registered");
        // The process's thread serves other tests too, each with at most a
        // few live registrations.
        let len = lock(&clock.state).heap.len();
        assert!(len <= 2 * MIN_CLEAN + 16, "{len} entries kept");
    }

    /// Many alarms, due at once, on a multi-threaded runtime: each fires.
    async fn many_alarms_fire(reactor: bool) {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..200u64 {
            tasks.push(tokio::spawn(async move {
                let mut alarm = Alarm::new(reactor);
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

    /// Each test above, on a runtime's clock (where there is one) and on
    /// the process's thread.
    macro_rules! on_both_clocks {
        ($($name:ident),* $(,)?) => {
            mod on_the_runtime_clock {
                $(
                    #[tokio::test]
                    async fn $name() {
                        super::$name(true).await
                    }
                )*
            }
            mod on_the_thread {
                $(
                    #[tokio::test]
                    async fn $name() {
                        super::$name(false).await
                    }
                )*
            }
        };
    }

    on_both_clocks!(
        fires_at_the_deadline,
        a_past_deadline_is_ready_at_once,
        none_never_fires,
        a_later_deadline_waits_the_whole_time,
        an_earlier_deadline_re_registers,
        dropped_alarms_are_cleaned_up,
    );

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_alarms_fire_on_the_runtime_clock() {
        many_alarms_fire(true).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_alarms_fire_on_the_thread() {
        many_alarms_fire(false).await
    }

    /// A single-threaded runtime with I/O and time, like `#[tokio::test]`'s.
    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// The clock an alarm is registered with.
    fn clock_of(alarm: &Alarm) -> Arc<Clock> {
        alarm
            .reg
            .as_ref()
            .map(|r| r.clock.clone())
            .expect("registered")
    }

    fn register_far(alarm: &mut Alarm, cx: &mut Context<'_>) {
        let far = Instant::now() + Duration::from_secs(3600);
        assert!(alarm.poll_until(cx, Some(far)).is_pending());
    }

    /// Counts wake-ups; for polling outside a runtime.
    #[derive(Default)]
    struct Count(
        std::sync::atomic::AtomicUsize,
        std::sync::Mutex<Option<std::thread::Thread>>,
    );

    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if let Some(t) = lock(&self.1).as_ref() {
                t.unpark();
            }
        }
    }

    /// On Linux a runtime's alarms share one timer descriptor of that
    /// runtime, once an alarm of a task with a reactor made it.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    #[tokio::test]
    async fn a_runtime_has_a_clock_of_its_own() {
        let (mut before, mut a, mut b) = (Alarm::new(false), Alarm::new(true), Alarm::new(false));
        std::future::poll_fn(|cx| {
            register_far(&mut before, cx);
            register_far(&mut a, cx);
            register_far(&mut b, cx);
            Poll::Ready(())
        })
        .await;
        assert!(
            matches!(clock_of(&before).kind, Kind::Thread(_)),
            "no clock made without a reactor's promise"
        );
        let clock = clock_of(&a);
        assert!(matches!(clock.kind, Kind::Timerfd(_)));
        assert!(Arc::ptr_eq(&clock, &clock_of(&b)));
        assert!(!lock(&clock.state).started, "no thread");
        let start = Instant::now();
        a.until(Some(start + Duration::from_millis(30))).await;
        assert!(start.elapsed() >= Duration::from_millis(30));
        assert!(Arc::ptr_eq(&clock, &clock_of(&a)), "same clock again");
    }

    /// Two runtimes on one thread: the alarms of the one running fire
    /// while the other, idle, is not driven.
    #[test]
    fn each_runtime_fires_its_own_alarms() {
        let (idle, busy) = (runtime(), runtime());
        let mut parked = Alarm::new(true);
        idle.block_on(std::future::poll_fn(|cx| {
            register_far(&mut parked, cx);
            Poll::Ready(())
        }));
        let start = Instant::now();
        busy.block_on(async {
            let mut alarm = Alarm::new(true);
            let fired = tokio::time::timeout(
                Duration::from_secs(5),
                alarm.until(Some(start + Duration::from_millis(20))),
            )
            .await;
            assert!(fired.is_ok(), "the alarm fired");
        });
        drop(parked);
    }

    /// When a runtime shuts down, its clock stops and wakes the alarms
    /// still registered with it; polled again on another runtime, an alarm
    /// registers there and fires.
    #[test]
    fn alarms_move_when_their_runtime_stops() {
        let first = runtime();
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut alarm = Alarm::new(true);
        first.block_on(async {
            register_far(&mut alarm, &mut Context::from_waker(&waker));
        });
        let old = clock_of(&alarm);
        drop(first);
        assert!(lock(&old.state).dead || matches!(old.kind, Kind::Thread(_)));
        if lock(&old.state).dead {
            assert_eq!(
                count.0.load(std::sync::atomic::Ordering::SeqCst),
                1,
                "woken"
            );
        }
        let start = Instant::now();
        runtime().block_on(async {
            let fired = tokio::time::timeout(
                Duration::from_secs(5),
                alarm.until(Some(start + Duration::from_millis(20))),
            )
            .await;
            assert!(fired.is_ok(), "the alarm fired");
        });
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(!Arc::ptr_eq(&old, &clock_of(&alarm)) || matches!(old.kind, Kind::Thread(_)));
    }

    /// Outside a runtime the process's thread keeps the deadlines.
    #[test]
    fn outside_a_runtime_the_thread_fires() {
        let count = Arc::new(Count::default());
        *lock(&count.1) = Some(std::thread::current());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut alarm = Alarm::new(true);
        let start = Instant::now();
        let deadline = start + Duration::from_millis(20);
        assert!(alarm.poll_until(&mut cx, Some(deadline)).is_pending());
        assert!(matches!(clock_of(&alarm).kind, Kind::Thread(_)));
        while alarm.poll_until(&mut cx, Some(deadline)).is_pending() {
            assert!(start.elapsed() < Duration::from_secs(5), "fired in time");
            std::thread::park_timeout(Duration::from_millis(100));
        }
        assert!(start.elapsed() >= Duration::from_millis(20));
        assert!(
            count.0.load(std::sync::atomic::Ordering::SeqCst) >= 1,
            "woken"
        );
    }

    /// A runtime built without I/O has no reactor for a timer descriptor:
    /// its alarms (which never promise one) use the process's thread.
    #[test]
    fn a_runtime_without_io_uses_the_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut alarm = Alarm::new(false);
            let start = Instant::now();
            alarm.until(Some(start + Duration::from_millis(20))).await;
            assert!(start.elapsed() >= Duration::from_millis(20));
            let mut far = Alarm::new(false);
            std::future::poll_fn(|cx| {
                register_far(&mut far, cx);
                Poll::Ready(())
            })
            .await;
            assert!(matches!(clock_of(&far).kind, Kind::Thread(_)));
        });
    }
}
