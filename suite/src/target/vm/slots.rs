//! At most N guests booted at once: each emulated vCPU is a host thread that
//! spins at full speed, so more guests than cores only slows every one of them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

pub struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

/// A held slot; dropping it frees the slot.
pub struct Slot<'a>(&'a Slots);

impl Slots {
    pub fn new(count: usize) -> Slots {
        Slots {
            free: Mutex::new(count.max(1)),
            freed: Condvar::new(),
        }
    }

    /// Waits for a free slot; `None` once `stopped` turns true while waiting.
    pub fn acquire<'a>(&'a self, stopped: &AtomicBool) -> Option<Slot<'a>> {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if stopped.load(Ordering::SeqCst) {
                return None;
            }
            if *free > 0 {
                *free -= 1;
                return Some(Slot(self));
            }
            free = self
                .freed
                .wait_timeout(free, Duration::from_millis(50))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_more_than_the_count_at_once_and_a_stop_ends_the_wait() {
        let slots = Slots::new(2);
        let go = AtomicBool::new(false);
        let a = slots.acquire(&go).unwrap();
        let _b = slots.acquire(&go).unwrap();
        let stopped = AtomicBool::new(true);
        assert!(slots.acquire(&stopped).is_none(), "full, and stopped");
        drop(a);
        assert!(slots.acquire(&go).is_some(), "a freed slot is taken again");
    }
}
