//! Sleeps and timeouts on the clocks ws-net keeps for its connections.
//!
//! ws-net times everything it does (connects, handshakes, keepalive pings,
//! idle and close timeouts) on clocks of its own, not on the tokio
//! runtime's timer, so it runs on a runtime built with
//! [`enable_io`](tokio::runtime::Builder::enable_io) alone. Such a runtime
//! does less on every wait for I/O: tokio's timer is consulted on each of
//! them, armed or not. An application on such a runtime times its own work with these
//! functions; they work on any tokio runtime.
//!
//! Deadlines follow the real clock ([`std::time::Instant`]); a test's
//! `tokio::time::pause()` does not move them. They need no precision: the
//! clock may wake a little late, never early.
//!
//! On Linux, each runtime's clock is a timer descriptor registered with its
//! reactor, made by the first connection on a tokio TCP socket; before
//! that, and elsewhere, one thread serves the whole process (started on
//! first use).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::time::Duration;
//! let slow = ws_net::time::sleep(Duration::from_secs(60));
//! let r = ws_net::time::timeout(Duration::from_millis(10), slow).await;
//! assert_eq!(r, Err(ws_net::time::Elapsed));
//! # }
//! ```

use std::future::Future;
use std::time::{Duration, Instant};

pub use crate::clock::Elapsed;
use crate::clock::{deadline_after, Alarm, Timeout};

/// Wait until `deadline` has passed. Cancel-safe (dropping it cancels the
/// wait).
pub async fn sleep_until(deadline: Instant) {
    Alarm::new(false).until(Some(deadline)).await
}

/// Wait for `duration` (`Duration::MAX`: about thirty years, as tokio's
/// `sleep`). Cancel-safe (dropping it cancels the wait).
pub async fn sleep(duration: Duration) {
    sleep_until(deadline_after(duration)).await
}

/// `fut`'s output, or [`Elapsed`] if `deadline` passes first (then `fut` is
/// dropped). `fut` is polled first, so one that is ready is not failed for
/// a deadline already past. Cancel-safe if `fut` is.
pub async fn timeout_at<F: Future>(deadline: Instant, fut: F) -> Result<F::Output, Elapsed> {
    Timeout::new(deadline, false, std::pin::pin!(fut)).await
}

/// `fut`'s output, or [`Elapsed`] if it takes longer than `duration` (then
/// `fut` is dropped; `Duration::MAX` is about thirty years). Cancel-safe if
/// `fut` is.
pub async fn timeout<F: Future>(duration: Duration, fut: F) -> Result<F::Output, Elapsed> {
    timeout_at(deadline_after(duration), fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A runtime without tokio's timer, as `ws echo` builds.
    fn io_only() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap()
    }

    #[test]
    fn sleeps_on_a_runtime_without_a_timer() {
        io_only().block_on(async {
            let start = Instant::now();
            sleep(Duration::from_millis(30)).await;
            let took = start.elapsed();
            assert!(took >= Duration::from_millis(30), "{took:?}");
            assert!(took < Duration::from_secs(5), "{took:?}");
        });
    }

    #[test]
    fn times_out_on_a_runtime_without_a_timer() {
        io_only().block_on(async {
            let start = Instant::now();
            let r = timeout(Duration::from_millis(30), std::future::pending::<()>()).await;
            assert_eq!(r, Err(Elapsed));
            assert!(start.elapsed() >= Duration::from_millis(30));
            // In time: the output, and no wait for the deadline.
            let start = Instant::now();
            let r = timeout(Duration::from_secs(60), async { 7 }).await;
            assert_eq!(r, Ok(7));
            assert!(start.elapsed() < Duration::from_secs(5));
        });
    }

    /// `Duration::MAX` ("never") is a deadline far away, not a panic.
    #[test]
    fn a_timeout_of_duration_max_never_fires() {
        io_only().block_on(async {
            assert_eq!(timeout(Duration::MAX, async { 3 }).await, Ok(3));
            let mut never = std::pin::pin!(sleep(Duration::MAX));
            let mut pending = std::pin::pin!(timeout(Duration::MAX, std::future::pending::<()>()));
            for _ in 0..3 {
                std::future::poll_fn(|cx| {
                    assert!(never.as_mut().poll(cx).is_pending());
                    assert!(pending.as_mut().poll(cx).is_pending());
                    std::task::Poll::Ready(())
                })
                .await;
                tokio::task::yield_now().await;
            }
        });
    }

    #[test]
    fn a_ready_future_wins_over_a_past_deadline() {
        io_only().block_on(async {
            let past = Instant::now() - Duration::from_millis(5);
            assert_eq!(timeout_at(past, async { 1 }).await, Ok(1));
            assert_eq!(
                timeout_at(past, std::future::pending::<()>()).await,
                Err(Elapsed)
            );
            // A sleep until the past is over at once.
            sleep_until(past).await;
        });
    }
}
