use super::*;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Duration;
use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

/// Records which queues it saw; "processes" `backlog` items one at a time.
struct Counting {
    seen: Arc<Mutex<Vec<usize>>>,
    backlog: Arc<AtomicU64>,
}

impl QueueHandler for Counting {
    fn process_queue(&mut self, queue: usize, ctl: &Yield) -> bool {
        while self.backlog.load(Ordering::SeqCst) > 0 {
            if ctl.requested() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
            self.backlog.fetch_sub(1, Ordering::SeqCst);
            self.seen.lock().unwrap().push(queue);
        }
        self.seen.lock().unwrap().push(queue);
        true
    }
}

fn wait_for(f: impl Fn() -> bool) {
    for _ in 0..5000 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    panic!("condition not reached");
}

fn counting(queues: usize, paused: bool) -> (Worker, Arc<Mutex<Vec<usize>>>, Arc<AtomicU64>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let backlog = Arc::new(AtomicU64::new(0));
    let handler = Counting {
        seen: seen.clone(),
        backlog: backlog.clone(),
    };
    (Worker::spawn("t", queues, handler, paused).unwrap(), seen, backlog)
}

/// Whether `fd` has a count, without taking it.
fn readable(fd: &EventFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd that outlives the call; a zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1
}

fn visits(seen: &Mutex<Vec<usize>>, q: usize) -> usize {
    seen.lock().unwrap().iter().filter(|&&s| s == q).count()
}

#[test]
fn kick_pause_resume_stop() {
    let (mut w, seen, backlog) = counting(2, true);
    std::thread::sleep(Duration::from_millis(5));
    assert!(seen.lock().unwrap().is_empty(), "started parked");
    w.resume();
    wait_for(|| seen.lock().unwrap().len() == 2); // the initial scan of both queues
    w.kick(1);
    wait_for(|| seen.lock().unwrap().len() == 3);
    assert_eq!(seen.lock().unwrap()[2], 1);

    // A long backlog is interrupted by pause and finished after resume.
    backlog.store(200, Ordering::SeqCst);
    w.kick(0);
    wait_for(|| backlog.load(Ordering::SeqCst) < 195);
    w.pause();
    let left = backlog.load(Ordering::SeqCst);
    assert!(left > 0);
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(backlog.load(Ordering::SeqCst), left, "parked means parked");
    w.kick(1); // noted while parked
    std::thread::sleep(Duration::from_millis(5));
    assert_eq!(visits(&seen, 1), 2, "a kick while parked waits for the resume");
    w.resume();
    wait_for(|| backlog.load(Ordering::SeqCst) == 0);
    wait_for(|| visits(&seen, 1) == 3);
    w.stop();
    w.kick(0); // after stop: ignored, no panic
    w.pause();
    w.resume();
}

#[test]
fn pause_waits_for_the_request_in_progress() {
    let (w, seen, backlog) = counting(1, false);
    wait_for(|| seen.lock().unwrap().len() == 1);
    backlog.store(1_000, Ordering::SeqCst);
    w.kick(0);
    wait_for(|| backlog.load(Ordering::SeqCst) < 998);
    for _ in 0..20 {
        w.pause();
        let (left, n) = (backlog.load(Ordering::SeqCst), seen.lock().unwrap().len());
        std::thread::sleep(Duration::from_millis(3));
        assert_eq!((backlog.load(Ordering::SeqCst), seen.lock().unwrap().len()), (left, n));
        w.resume();
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn notifiers_kick_their_queue() {
    let (w, seen, _) = counting(3, false);
    wait_for(|| seen.lock().unwrap().len() == 3);
    let fd = Arc::new(EventFd::new(0).unwrap()); // blocking: the worker makes it non-blocking
    w.kicker().add_notifier(2, fd.clone()).unwrap();
    for n in 1..=3 {
        fd.write(1).unwrap();
        wait_for(|| visits(&seen, 2) == 1 + n);
    }
    // The thread reads the count: the notifier is quiet again, no busy loop on it.
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(visits(&seen, 2), 4);
    assert!(!readable(&fd), "count consumed");

    // Removed: signals no longer reach the thread.
    w.kicker().remove_notifier(2);
    fd.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(visits(&seen, 2), 4);

    // A count already held when the notifier is removed is passed on as a kick.
    let held = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    w.kicker().add_notifier(1, held.clone()).unwrap();
    w.pause();
    held.write(1).unwrap();
    w.kicker().remove_notifier(1);
    w.resume();
    wait_for(|| visits(&seen, 1) == 2);

    // Replacing a queue's notifier drops the old one from the epoll set.
    let (a, b) = (Arc::new(EventFd::new(0).unwrap()), Arc::new(EventFd::new(0).unwrap()));
    w.kicker().add_notifier(0, a.clone()).unwrap();
    w.kicker().add_notifier(0, b.clone()).unwrap();
    a.write(1).unwrap();
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(visits(&seen, 0), 1);
    b.write(1).unwrap();
    wait_for(|| visits(&seen, 0) == 2);

    assert!(matches!(w.kicker().add_notifier(3, fd.clone()), Err(WorkerError::NoQueue(3))));
}

#[test]
fn a_notify_while_paused_is_served_after_resume() {
    let (w, seen, _) = counting(1, false);
    wait_for(|| seen.lock().unwrap().len() == 1);
    let fd = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    w.kicker().add_notifier(0, fd.clone()).unwrap();
    w.pause();
    fd.write(1).unwrap();
    // The parked thread reads its notifier (no busy loop on it) but visits nothing.
    wait_for(|| !readable(&fd));
    std::thread::sleep(Duration::from_millis(10));
    assert_eq!(visits(&seen, 0), 1);
    w.resume();
    wait_for(|| visits(&seen, 0) == 2);
}

#[test]
fn stop_with_notifiers_armed() {
    let (mut w, seen, _) = counting(1, false);
    wait_for(|| seen.lock().unwrap().len() == 1);
    let k = w.kicker();
    let fd = Arc::new(EventFd::new(EFD_NONBLOCK).unwrap());
    k.add_notifier(0, fd.clone()).unwrap();
    w.stop();
    fd.write(1).unwrap();
    k.kick(0);
    k.remove_notifier(0);
    k.add_notifier(0, fd).unwrap();
    assert_eq!(visits(&seen, 0), 1);
}

/// Receives from a stream (queue 1's watched descriptor) until it would block, as
/// virtio-net's back end: without "room in the guest" it stops watching the stream until
/// queue 0 (the "rx notify") is visited.
struct Draining {
    sock: UnixStream,
    seen: Arc<Mutex<Vec<usize>>>,
    /// What `watching` answers (bit 1, the socket's pseudo queue).
    watch: Arc<AtomicU64>,
    /// Drain only when this is set ("the guest has room").
    room: Arc<AtomicBool>,
    got: Arc<AtomicU64>,
}

impl QueueHandler for Draining {
    fn process_queue(&mut self, queue: usize, _: &Yield) -> bool {
        self.seen.lock().unwrap().push(queue);
        if queue == 0 {
            // The "rx notify": watch the socket again.
            self.watch.store(0b10, Ordering::SeqCst);
            return true;
        }
        if !self.room.load(Ordering::SeqCst) {
            // No room: stop watching until queue 0 (the "rx notify") comes.
            self.watch.store(0, Ordering::SeqCst);
            return true;
        }
        let mut buf = [0u8; 64];
        while let Ok(n) = self.sock.read(&mut buf) {
            self.got.fetch_add(n as u64, Ordering::SeqCst);
        }
        self.watch.store(0b10, Ordering::SeqCst);
        true
    }

    fn watching(&self) -> u64 {
        self.watch.load(Ordering::SeqCst)
    }
}

struct DrainTest {
    w: Worker,
    far: UnixStream,
    seen: Arc<Mutex<Vec<usize>>>,
    room: Arc<AtomicBool>,
    got: Arc<AtomicU64>,
}

fn draining(paused: bool) -> DrainTest {
    let (near, far) = UnixStream::pair().unwrap();
    near.set_nonblocking(true).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let room = Arc::new(AtomicBool::new(true));
    let got = Arc::new(AtomicU64::new(0));
    let watch = Watch {
        queue: 1,
        fd: near.as_raw_fd(),
    };
    let h = Draining {
        sock: near,
        seen: seen.clone(),
        watch: Arc::new(AtomicU64::new(0b10)),
        room: room.clone(),
        got: got.clone(),
    };
    let w = Worker::spawn_watching("t", 2, &[watch], h, paused).unwrap();
    DrainTest { w, far, seen, room, got }
}

#[test]
fn a_watched_descriptor_is_served_and_unwatched_while_there_is_no_room() {
    let mut t = draining(false);
    wait_for(|| t.seen.lock().unwrap().len() == 2);
    t.far.write_all(b"abc").unwrap();
    wait_for(|| t.got.load(Ordering::SeqCst) == 3);
    assert_eq!(visits(&t.seen, 1), 2);

    // No room: one visit, then the descriptor is out of the set however long it stays
    // readable (a level-triggered descriptor would otherwise spin the thread).
    t.room.store(false, Ordering::SeqCst);
    t.far.write_all(b"defg").unwrap();
    wait_for(|| visits(&t.seen, 1) == 3);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(visits(&t.seen, 1), 3, "not watched while there is no room");
    assert_eq!(t.got.load(Ordering::SeqCst), 3);

    // The "rx notify" (queue 0) lets the handler watch again: the waiting bytes come in.
    t.room.store(true, Ordering::SeqCst);
    t.w.kick(0);
    wait_for(|| t.got.load(Ordering::SeqCst) == 7);
    t.far.write_all(b"h").unwrap();
    wait_for(|| t.got.load(Ordering::SeqCst) == 8);
}

#[test]
fn a_watched_descriptor_is_not_watched_while_paused() {
    let mut t = draining(true);
    t.far.write_all(b"abc").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert!(t.seen.lock().unwrap().is_empty(), "started parked");
    t.w.resume();
    wait_for(|| t.got.load(Ordering::SeqCst) == 3);
    t.w.pause();
    let n = t.seen.lock().unwrap().len();
    t.far.write_all(b"de").unwrap();
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(t.seen.lock().unwrap().len(), n, "nothing visited while paused");
    assert_eq!(t.got.load(Ordering::SeqCst), 3);
    t.w.resume();
    wait_for(|| t.got.load(Ordering::SeqCst) == 5);
}

#[test]
fn bad_arguments_are_refused() {
    let h = || Counting {
        seen: Arc::default(),
        backlog: Arc::default(),
    };
    assert!(matches!(Worker::spawn("t", 65, h(), false), Err(WorkerError::TooManyQueues(65))));
    let fd = EventFd::new(0).unwrap();
    let w = Watch {
        queue: 2,
        fd: fd.as_raw_fd(),
    };
    assert!(matches!(
        Worker::spawn_watching("t", 2, &[w], h(), false),
        Err(WorkerError::NoQueue(2))
    ));
    // A regular file cannot be watched with epoll.
    let file = std::fs::File::open("/proc/self/exe").unwrap();
    let w = Watch {
        queue: 1,
        fd: file.as_raw_fd(),
    };
    assert!(matches!(
        Worker::spawn_watching("t", 2, &[w], h(), false),
        Err(WorkerError::Watch { queue: 1, .. })
    ));
}

#[test]
fn tokens_round_trip() {
    use shared::Token;
    for t in [Token::Wake, Token::Notify(0), Token::Notify(63), Token::Watch(0), Token::Watch(63)] {
        assert_eq!(Token::decode(t.encode()), Some(t));
    }
    assert_eq!(Token::decode(64), None);
    assert_eq!(Token::decode((1 << 32) | 64), None);
}
