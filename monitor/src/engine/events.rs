//! The machine's asynchronous events (QMP's `STOP`, `RESUME`, `MIGRATION`, ...), stamped
//! when they happen and handed to every monitor that listens.

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Events a listener may have queued before the oldest are dropped: a client that never
/// reads must not hold the machine's memory or block the machine.
pub const EVENT_QUEUE: usize = 1024;

/// One event: QMP's name and its `data` member (none for events without data).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: &'static str,
    pub data: Option<Value>,
}

impl Event {
    pub fn stop() -> Self {
        Event { name: "STOP", data: None }
    }

    pub fn resume() -> Self {
        Event {
            name: "RESUME",
            data: None,
        }
    }

    pub fn powerdown() -> Self {
        Event {
            name: "POWERDOWN",
            data: None,
        }
    }

    /// `reason` is QEMU's `ShutdownCause` (`host-qmp-quit`, `guest-shutdown`, ...).
    pub fn shutdown(guest: bool, reason: &str) -> Self {
        Event {
            name: "SHUTDOWN",
            data: Some(json!({ "guest": guest, "reason": reason })),
        }
    }

    pub fn reset(guest: bool, reason: &str) -> Self {
        Event {
            name: "RESET",
            data: Some(json!({ "guest": guest, "reason": reason })),
        }
    }

    pub fn migration(status: super::MigrationStatus) -> Self {
        Event {
            name: "MIGRATION",
            data: Some(json!({ "status": status.name() })),
        }
    }

    pub fn migration_pass(pass: u64) -> Self {
        Event {
            name: "MIGRATION_PASS",
            data: Some(json!({ "pass": pass })),
        }
    }

    pub fn job_status_change(id: &str, status: &str) -> Self {
        Event {
            name: "JOB_STATUS_CHANGE",
            data: Some(json!({ "id": id, "status": status })),
        }
    }
}

/// An event with the wall-clock time it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct Stamped {
    pub event: Event,
    pub seconds: u64,
    pub microseconds: u32,
}

impl Stamped {
    /// The QMP message: `{"event": ..., "data": ..., "timestamp": {...}}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "event": self.event.name,
            "timestamp": { "seconds": self.seconds, "microseconds": self.microseconds },
        });
        if let Some(d) = &self.event.data {
            v["data"] = d.clone();
        }
        v
    }
}

/// Called after an event was queued for a listener (to wake a thread that polls).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

struct Listener {
    tx: Sender<Stamped>,
    wake: Option<Waker>,
}

/// Hands each event to every current listener.
#[derive(Default)]
pub struct EventBus {
    listeners: Mutex<Vec<Listener>>,
}

impl EventBus {
    /// A new listener; it sees the events emitted from now on until it is dropped.
    pub fn subscribe(&self) -> Receiver<Stamped> {
        self.listen(None)
    }

    /// A listener whose `wake` is called after each event queued for it.
    pub fn subscribe_with(&self, wake: Waker) -> Receiver<Stamped> {
        self.listen(Some(wake))
    }

    fn listen(&self, wake: Option<Waker>) -> Receiver<Stamped> {
        let (tx, rx) = bounded(EVENT_QUEUE);
        self.listeners.lock().unwrap_or_else(|p| p.into_inner()).push(Listener { tx, wake });
        rx
    }

    pub fn emit(&self, event: Event) {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let stamped = Stamped {
            event,
            seconds: now.as_secs(),
            microseconds: now.subsec_micros(),
        };
        let mut listeners = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        // A listener that is gone is forgotten; one that is full misses this event.
        listeners.retain(|l| {
            let sent = l.tx.try_send(stamped.clone());
            if let (Ok(()), Some(wake)) = (&sent, &l.wake) {
                wake();
            }
            !matches!(sent, Err(TrySendError::Disconnected(_)))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_get_events_from_their_subscription_on() {
        let bus = EventBus::default();
        bus.emit(Event::stop());
        let a = bus.subscribe();
        bus.emit(Event::resume());
        let b = bus.subscribe();
        bus.emit(Event::shutdown(false, "host-qmp-quit"));
        assert_eq!(a.try_recv().unwrap().event.name, "RESUME");
        let s = a.try_recv().unwrap();
        assert_eq!(s.event, b.try_recv().unwrap().event);
        let j = s.to_json();
        assert_eq!(j["data"], json!({"guest": false, "reason": "host-qmp-quit"}));
        assert!(j["timestamp"]["seconds"].as_u64().unwrap() > 1_600_000_000);
        drop(a);
        bus.emit(Event::stop());
        assert_eq!(bus.listeners.lock().unwrap().len(), 1, "a dropped listener is forgotten");
        // A listener that never reads loses events instead of growing without bound.
        for _ in 0..EVENT_QUEUE + 10 {
            bus.emit(Event::stop());
        }
        assert_eq!(b.len(), EVENT_QUEUE);
    }
}
