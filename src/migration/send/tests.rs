//! The cancel/commit race and the destination's answer to END.

use super::*;
use crate::migration::disks;
use crate::migration::disks::reply::ReplyError;
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
    let e = end_answer(&mut &no[..]).unwrap_err();
    assert!(
        matches!(&e, Stop::Failed(Failure::NotLoaded(why)) if why.starts_with("Failed to get")),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the destination could not load the migration: Failed to get \"write\" lock"
    );
    // Closed without a word: the destination is gone and runs nothing.
    let e = end_answer(&mut &b""[..]).unwrap_err();
    assert!(matches!(&e, Stop::Failed(Failure::Reply(ReplyError::NoAnswer(_)))), "{e:?}");
    assert_eq!(e.to_string(), "the destination did not answer: the connection was closed");
    // A reset connection may have swallowed a GWOK: undecided.
    struct Reset;
    impl Read for Reset {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::from_raw_os_error(libc::ECONNRESET))
        }
    }
    let e = end_answer(&mut Reset).unwrap_err();
    assert!(matches!(&e, Stop::Undecided(Undecided::AnswerLost(_))), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the destination's answer to the switch-over was lost: Connection reset by peer; \
         the VM stays paused ('cont' resumes it here if the destination does not hold its disks)"
    );
    // Silent but there: undecided.
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let e = end_answer(&mut &a).unwrap_err();
    assert!(matches!(e, Stop::Undecided(Undecided::Silent { .. })), "{e:?}");
    assert!(e.to_string().starts_with("the destination did not confirm the switch-over within "));
}
