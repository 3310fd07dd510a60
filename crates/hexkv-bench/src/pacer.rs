//! Waiting for an open-loop request's due time with a timer finer than tokio's.
//!
//! tokio's timer wheel has a resolution of one millisecond and a `sleep_until` wakes at a tick
//! after the deadline: 1–2 ms late at the rates `hexkv bench` runs, and since an open loop
//! measures each latency from the due time (no coordinated omission), every latency would carry
//! the load generator's own lateness (a median of 1.5 ms where the server answered in 0.3 ms,
//! "Pacing the open loop" in `docs/performance.md`). On Linux a [`Pacer`] arms a `timerfd` (a
//! high-resolution kernel timer, no timer slack) for the exact due time and waits for it on
//! the runtime's reactor; elsewhere, or if the kernel refuses the timer, it falls back to
//! tokio's sleep.
//!
//! The price is two system calls per paced request (arm the timer, read its expiry) on the
//! load generator's side; closed loops never wait and never pay it.

use tokio::time::Instant;

/// Waits for due times; one per worker (each owns its timer).
#[derive(Debug)]
pub struct Pacer {
    #[cfg(target_os = "linux")]
    timer: Option<tokio::io::unix::AsyncFd<linux::Timer>>,
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

impl Pacer {
    /// A pacer with its own kernel timer where there is one. Must be called within a tokio
    /// runtime (the timer registers with its reactor).
    #[must_use]
    pub fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            timer: linux::timer().ok(),
        }
    }

    /// A pacer that always uses tokio's millisecond timer, as where there is no `timerfd`.
    #[cfg(test)]
    fn coarse() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            timer: None,
        }
    }

    /// Whether this pacer waits on a kernel timer finer than tokio's.
    #[cfg(test)]
    fn is_fine(&self) -> bool {
        #[cfg(target_os = "linux")]
        return self.timer.is_some();
        #[cfg(not(target_os = "linux"))]
        return false;
    }

    /// Returns at `due` or, if that has passed, at once. Never returns before `due`.
    pub async fn until(&mut self, due: Instant) {
        let now = Instant::now();
        if due <= now {
            return;
        }
        #[cfg(target_os = "linux")]
        if let Some(timer) = &self.timer {
            if linux::wait(timer, due - now).await.is_ok() {
                return;
            }
            // The kernel timer failed: use tokio's from now on.
            self.timer = None;
        }
        tokio::time::sleep_until(due).await;
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io;
    use std::os::fd::{AsFd as _, AsRawFd, RawFd};
    use std::time::Duration;

    use nix::sys::time::TimeSpec;
    use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
    use tokio::io::unix::AsyncFd;

    /// A `timerfd`, in the form tokio's reactor registers.
    #[derive(Debug)]
    pub(super) struct Timer(TimerFd);

    impl AsRawFd for Timer {
        fn as_raw_fd(&self) -> RawFd {
            self.0.as_fd().as_raw_fd()
        }
    }

    pub(super) fn timer() -> io::Result<AsyncFd<Timer>> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // `register`, the replacement, is `unsafe` (forbidden here) for the conditions this
        // type meets: `Timer` owns its descriptor and always returns that same one.
        #[allow(deprecated)]
        AsyncFd::new(Timer(timer))
    }

    /// Arms the one-shot timer `after` from now (not zero: that would disarm it) and waits
    /// for its expiry.
    pub(super) async fn wait(timer: &AsyncFd<Timer>, after: Duration) -> io::Result<()> {
        timer.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        )?;
        loop {
            let mut ready = timer.readable().await?;
            // Reading the expiry count resets the timer's readiness; until it expires the
            // read fails with `EAGAIN`, which `try_io` turns into waiting again.
            if let Ok(expired) = ready.try_io(|t| t.get_ref().0.wait().map_err(io::Error::from)) {
                // The one-shot timer cannot fire again before it is re-armed: clear the
                // cached readiness so the next wait does not start with a futile read.
                ready.clear_ready();
                return expired;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_pacer_never_returns_before_the_due_time() {
        for mut pacer in [Pacer::new(), Pacer::coarse()] {
            for micros in [1, 150, 700, 1_300] {
                let due = Instant::now() + Duration::from_micros(micros);
                pacer.until(due).await;
                assert!(
                    Instant::now() >= due,
                    "{pacer:?} woke early for {micros} µs"
                );
            }
        }
    }

    #[tokio::test]
    async fn a_due_time_in_the_past_returns_at_once() {
        let mut pacer = Pacer::new();
        let past = Instant::now() - Duration::from_secs(1);
        // The future is ready at its first poll: it neither arms a timer nor sleeps.
        let waited = futures_ready(pacer.until(past));
        assert!(waited, "a past due time must not wait");
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn on_linux_the_pacer_uses_a_kernel_timer() {
        assert!(Pacer::new().is_fine());
        assert!(!Pacer::coarse().is_fine());
    }

    /// Whether `future` completes at its first poll.
    fn futures_ready(future: impl std::future::Future<Output = ()>) -> bool {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        future.as_mut().poll(&mut cx).is_ready()
    }
}
