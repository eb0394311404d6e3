//! The cancel/commit race and the destination's answer to END.

use super::*;
use crate::migration::disks;
use crate::migration::info::Status;
use devices::bus::lock;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::time::Duration;

fn counting(aborts: &Arc<AtomicUsize>) -> crate::migration::uri::Aborter {
    let a = aborts.clone();
    Box::new(move || {
        a.fetch_add(1, Ordering::SeqCst);
    })
}

#[test]
fn a_cancel_wins_before_the_commit_and_is_refused_after_it() {
    let aborts = Arc::new(AtomicUsize::new(0));
    let s = Shared::default();
    s.begin();
    s.connected(counting(&aborts));
    assert!(s.request_cancel());
    assert_eq!(aborts.load(Ordering::SeqCst), 1, "the connection was broken");
    assert!(matches!(s.commit(), Err(Stop::Cancelled)));

    // The next migration starts clean; once committed, a cancel changes nothing.
    s.begin();
    lock(&s.stats).status = Status::Active;
    s.connected(counting(&aborts));
    assert!(s.commit().is_ok());
    assert!(!s.request_cancel());
    assert_eq!(aborts.load(Ordering::SeqCst), 1);
    assert_eq!(lock(&s.stats).status, Status::Active);

    // A cancel asked before the connection exists breaks it as soon as it does.
    s.begin();
    assert!(s.request_cancel());
    s.connected(counting(&aborts));
    assert_eq!(aborts.load(Ordering::SeqCst), 2);
}

#[test]
fn the_answer_to_end_decides_the_outcome() {
    let mut ok = Vec::new();
    disks::reply::send(&mut ok, &Ok::<(), String>(())).unwrap();
    assert!(end_answer(&mut &ok[..]).is_ok());
    let mut no = Vec::new();
    disks::reply::send(&mut no, &Err("Failed to get \"write\" lock")).unwrap();
    assert!(matches!(end_answer(&mut &no[..]), Err(Stop::Failed(e)) if e.contains("could not load the migration: Failed to get")));
    // Closed without a word: the destination is gone and runs nothing.
    assert!(matches!(end_answer(&mut &b""[..]), Err(Stop::Failed(e)) if e.contains("connection was closed")));
    // A reset connection may have swallowed a GWOK: undecided.
    struct Reset;
    impl Read for Reset {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ECONNRESET))
        }
    }
    assert!(
        matches!(end_answer(&mut Reset), Err(Stop::Undecided(e)) if e.contains("answer to the switch-over was lost: Connection reset by peer"))
    );
    // Silent but there: undecided.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert!(matches!(end_answer(&mut &a), Err(Stop::Undecided(_))));
}
