//! The queue between the senders (requests, the supervisor, the configuration) and the
//! writer. An event becomes its JSON line when it is sent, on the sender's thread, appended
//! to one shared buffer; the writer takes the whole buffer at once and appends it to the
//! file in one write. Nothing of an event but its index fields crosses to the writer's
//! thread: no per-event message, allocation freed on another thread, or second copy.

use super::{Event, Line, Severity, kinds};
use std::borrow::Cow;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// A served request's `request.completed` (the bulk of the log: one per request) gets no
/// index row of its own when its id is a ULID the gateway made: the id tells when the
/// request arrived, and the batch it was written in has one row saying which arrivals it
/// holds and where its lines are. Events of requests slower than this are indexed one by
/// one (a batch row covers at most this span of arrivals before its own time).
pub(crate) const FOUND_BY_TIME_SPAN_MS: i64 = 3_600_000;

/// The arrival time by which the store finds `ev`, written at `written_ms`, without a row
/// of its own, if it can be found so (see [`FOUND_BY_TIME_SPAN_MS`]).
fn found_by_arrival(ev: &Event<'_>, written_ms: i64) -> Option<i64> {
    let arrived = ev.arrived_ms?;
    (ev.kind == kinds::REQUEST_COMPLETED
        && ev.severity == Severity::Info
        && ev.code.is_none()
        && ev.request_id.is_some()
        && (0..FOUND_BY_TIME_SPAN_MS).contains(&(written_ms - arrived)))
    .then_some(arrived)
}

/// What the store needs of one event besides its line.
#[derive(Debug)]
pub(crate) struct Entry {
    /// Its type.
    pub(crate) kind: &'static str,
    /// Its severity.
    pub(crate) severity: Severity,
    /// Its time (ms since the Unix epoch), as its line says.
    pub(crate) ms: i64,
    /// For an event found by its request's arrival (no index row): that arrival.
    pub(crate) by_arrival: Option<i64>,
    /// Its request id, for an event that gets an index row.
    pub(crate) request_id: Option<String>,
    /// Its route.
    pub(crate) route: Option<Arc<str>>,
    /// Its code.
    pub(crate) code: Option<Cow<'static, str>>,
    /// Where its line starts in the batch's bytes.
    pub(crate) start: usize,
}

/// Events as lines, in the order they were sent.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    /// The lines, each ended by a newline.
    pub(crate) bytes: Vec<u8>,
    /// The events' index fields, in order.
    pub(crate) entries: Vec<Entry>,
    /// The text of the second of the last line's time.
    second: crate::time::SecondText,
}

impl Batch {
    /// Appends `ev` as written at `ms` (ms since the Unix epoch), with a new event id.
    /// Takes from `ev` what the store keeps (by reference: an event is not copied again).
    pub(crate) fn push(&mut self, ev: &mut Event<'_>, ms: i64) -> Result<(), serde_json::Error> {
        let start = self.bytes.len();
        let mut id = *b"ev_..........................";
        if let Ok(ulid) = <&mut [u8; 26]>::try_from(&mut id[3..]) {
            crate::http::request_id::write_ulid(ulid, ms as u64);
        }
        let line = Line {
            id: &id,
            time_ms: ms,
            event: ev,
        };
        // A line cut off (an error, or a panic while it is written) is taken back whole:
        // the next line must not run into it.
        let undo = Unwound {
            bytes: &mut self.bytes,
            start,
        };
        if let Err(e) = line.write(undo.bytes, &mut self.second) {
            undo.bytes.truncate(start);
            return Err(e);
        }
        undo.bytes.push(b'\n');
        drop(undo);
        let by_arrival = found_by_arrival(ev, ms);
        self.entries.push(Entry {
            kind: ev.kind,
            severity: ev.severity,
            ms,
            by_arrival,
            // Only a row needs it: otherwise it is freed here, by its sender's thread.
            request_id: if by_arrival.is_none() {
                ev.request_id.take().map(Cow::into_owned)
            } else {
                None
            },
            route: ev.route.take(),
            code: ev.code.take(),
            start,
        });
        Ok(())
    }

    /// The number of events.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it has none.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Each event's entry and line (without its newline).
    pub(crate) fn lines(&self) -> impl Iterator<Item = (&Entry, &[u8])> {
        self.entries.iter().enumerate().map(|(i, e)| {
            let end = self
                .entries
                .get(i + 1)
                .map_or(self.bytes.len(), |next| next.start);
            (e, &self.bytes[e.start..end - 1])
        })
    }

    /// Empties it, keeping its room for the batches of steady traffic; the room a burst
    /// made (a flood of connections, each with its events) is given back, so that memory
    /// returns to where it was once the burst is over.
    pub(crate) fn clear(&mut self) {
        const KEEP_BYTES: usize = 4 * WRITE_BYTES;
        const KEEP_ENTRIES: usize = 4096;
        self.bytes.clear();
        self.entries.clear();
        if self.bytes.capacity() > KEEP_BYTES {
            self.bytes = Vec::new();
        }
        if self.entries.capacity() > KEEP_ENTRIES {
            self.entries = Vec::new();
        }
    }
}

/// Takes back a line being written when its writing panics.
struct Unwound<'v> {
    bytes: &'v mut Vec<u8>,
    start: usize,
}

impl Drop for Unwound<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.bytes.truncate(self.start);
        }
    }
}

/// Why [`Queue::push`] did not take an event.
pub(crate) enum Refused {
    /// The queue holds its most events: the event is left with its sender, to wait or be
    /// lost.
    Full,
    /// The log is closing.
    Closed,
    /// Its line could not be made.
    Unwritable(serde_json::Error),
}

/// What the writer waits for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// It is writing.
    #[default]
    No,
    /// The log was idle: any event.
    Any,
    /// It lingers after a write, so that the next carries many events: a batch worth
    /// writing at once ([`WRITE_BYTES`] of lines, or a full queue).
    Enough,
}

/// The lines that make a batch worth writing before the writer's linger is out: small
/// enough that the buffer being filled stays in the sender's cache, large enough that a
/// write (and its index transaction) carries hundreds of events.
const WRITE_BYTES: usize = 128 << 10;

#[derive(Debug, Default)]
struct State {
    batch: Batch,
    /// The time of the last event queued: times (and ids) ascend even when the clock steps
    /// back.
    last_ms: i64,
    /// What the writer waits for, if it waits.
    writer: Waiting,
    /// Closing: nothing more is taken; `done` (if any) hears when the rest is written.
    closing: bool,
    done: Option<std::sync::mpsc::Sender<()>>,
}

/// The bounded queue of events, shared by the senders and the writer.
#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// Wakes the writer when an event arrives while it waits.
    arrived: Condvar,
    /// Wakes senders waiting for room.
    pub(crate) room: tokio::sync::Notify,
    /// The most events it holds.
    pub(crate) cap: usize,
}

impl Queue {
    /// A queue of at most `cap` events.
    pub(crate) fn new(cap: usize) -> Queue {
        Queue {
            state: Mutex::default(),
            arrived: Condvar::new(),
            room: tokio::sync::Notify::new(),
            cap: cap.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A sender that panicked while holding it took its part-written line back
        // ([`Unwound`]) and added no entry: the batch is whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `ev` as its line, or says why not.
    pub(crate) fn push(&self, ev: &mut Event<'_>) -> Result<(), Refused> {
        let mut s = self.lock();
        if s.closing {
            return Err(Refused::Closed);
        }
        if s.batch.len() >= self.cap {
            return Err(Refused::Full);
        }
        let ms = crate::time::unix_millis(ev.time).max(s.last_ms);
        s.last_ms = ms;
        s.batch.push(ev, ms).map_err(Refused::Unwritable)?;
        let wake = match s.writer {
            Waiting::No => false,
            Waiting::Any => true,
            Waiting::Enough => s.batch.bytes.len() >= WRITE_BYTES || s.batch.len() >= self.cap,
        };
        if wake {
            s.writer = Waiting::No;
            self.arrived.notify_one();
        }
        Ok(())
    }

    /// The writer's: waits for events (or for the close), then takes every queued event,
    /// leaving `spare` (empty) for the next ones; says whether the log is closing, and
    /// whom to tell when the rest is written. With `linger`, it waits until then for more
    /// events unless a batch worth writing (or a full queue) comes first; with `quiet`, a
    /// linger that ends with no event queued returns an empty batch (the log went quiet:
    /// the writer has something to finish) rather than waiting on.
    pub(crate) fn take(
        &self,
        spare: Batch,
        mut linger: Option<Instant>,
        quiet: bool,
    ) -> (Batch, bool, Option<std::sync::mpsc::Sender<()>>) {
        let mut s = self.lock();
        while !s.closing {
            match linger {
                Some(until) => {
                    if s.batch.bytes.len() >= WRITE_BYTES || s.batch.len() >= self.cap {
                        break;
                    }
                    let now = Instant::now();
                    if now >= until {
                        if quiet && s.batch.is_empty() {
                            break;
                        }
                        linger = None;
                        continue;
                    }
                    s.writer = Waiting::Enough;
                    s = self
                        .arrived
                        .wait_timeout(s, until - now)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                None if !s.batch.is_empty() => break,
                None => {
                    s.writer = Waiting::Any;
                    s = self.arrived.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        s.writer = Waiting::No;
        let batch = std::mem::replace(&mut s.batch, spare);
        let closing = s.closing;
        let done = s.done.take();
        drop(s);
        self.room.notify_waiters();
        (batch, closing, done)
    }

    /// Stops taking events; the writer writes what is queued, then tells `done`.
    pub(crate) fn close(&self, done: Option<std::sync::mpsc::Sender<()>>) {
        let mut s = self.lock();
        s.closing = true;
        if done.is_some() {
            s.done = done;
        }
        self.arrived.notify_one();
        drop(s);
        // Senders waiting for room try again, and hear that the log is closing.
        self.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_each_line_with_its_entry() {
        let mut b = Batch::default();
        b.push(
            &mut Event::new(kinds::API_STARTED, Severity::Info).route("a"),
            1_000,
        )
        .unwrap();
        b.push(
            &mut Event::new(kinds::CONFIG_REJECTED, Severity::Warning).code("config_invalid"),
            1_001,
        )
        .unwrap();
        let lines: Vec<(&str, serde_json::Value)> = b
            .lines()
            .map(|(e, l)| (e.kind, serde_json::from_slice(l).unwrap()))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].0, kinds::API_STARTED);
        assert_eq!(lines[0].1["route"], "a");
        assert_eq!(lines[1].1["code"], "config_invalid");
        assert_eq!(b.bytes.iter().filter(|&&c| c == b'\n').count(), 2);
        b.clear();
        assert!(b.is_empty() && b.bytes.is_empty());
    }

    #[test]
    fn a_full_queue_gives_the_event_back_and_a_closed_one_refuses() {
        let q = Queue::new(1);
        q.push(&mut Event::new(kinds::API_STARTED, Severity::Info))
            .ok()
            .unwrap();
        assert!(matches!(
            q.push(&mut Event::new(kinds::API_STOPPED, Severity::Info)),
            Err(Refused::Full)
        ));
        let (taken, closing, _) = q.take(Batch::default(), None, false);
        assert_eq!(taken.len(), 1);
        assert!(!closing);
        q.close(None);
        assert!(matches!(
            q.push(&mut Event::new(kinds::API_STOPPED, Severity::Info)),
            Err(Refused::Closed)
        ));
        let (taken, closing, _) = q.take(Batch::default(), None, false);
        assert!(taken.is_empty() && closing);
    }

    #[test]
    fn a_quiet_linger_returns_empty_only_when_asked() {
        let q = Queue::new(8);
        let soon = || Some(Instant::now() + std::time::Duration::from_millis(5));
        // Asked: the linger ends with nothing queued, and the writer gets an empty batch.
        let (taken, closing, _) = q.take(Batch::default(), soon(), true);
        assert!(taken.is_empty() && !closing);
        // An event queued during the linger is taken when it ends.
        q.push(&mut Event::new(kinds::API_STARTED, Severity::Info))
            .ok()
            .unwrap();
        let (taken, _, _) = q.take(Batch::default(), soon(), true);
        assert_eq!(taken.len(), 1);
        // Not asked: the writer waits on past the linger for the next event.
        let q = std::sync::Arc::new(Queue::new(8));
        let writer = std::thread::spawn({
            let q = q.clone();
            move || q.take(Batch::default(), soon(), false).0.len()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        q.push(&mut Event::new(kinds::API_STOPPED, Severity::Info))
            .ok()
            .unwrap();
        assert_eq!(writer.join().unwrap(), 1);
    }

    #[test]
    fn a_line_cut_off_by_a_panic_is_taken_back() {
        let mut b = Batch::default();
        b.push(&mut Event::new(kinds::API_STARTED, Severity::Info), 1_000)
            .unwrap();
        let whole = b.bytes.len();
        let cut = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _undo = Unwound {
                bytes: &mut b.bytes,
                start: whole,
            };
            // A line half written when its writing panics.
            _undo.bytes.extend_from_slice(b"{\"id\":\"ev_");
            panic!("while writing");
        }));
        assert!(cut.is_err());
        assert_eq!(b.bytes.len(), whole);
        assert_eq!(b.lines().count(), 1);
    }

    #[test]
    fn closing_wakes_the_senders_waiting_for_room() {
        let q = Arc::new(Queue::new(1));
        q.push(&mut Event::new(kinds::API_STARTED, Severity::Info))
            .ok()
            .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let room = q.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            q.close(None);
            // Woken at once, not at a deadline.
            tokio::time::timeout(std::time::Duration::from_secs(5), room)
                .await
                .unwrap();
        });
        assert!(matches!(
            q.push(&mut Event::new(kinds::API_STOPPED, Severity::Info)),
            Err(Refused::Closed)
        ));
    }
}
