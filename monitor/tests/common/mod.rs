//! A fake VMM and socket helpers shared by the transport tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use monitor::{Command, InfoCommand, Outcome, Pending, SharedVmm, Vmm};

pub const VERSION: &str = "9.9.9";
pub const BANNER: &str = "godwit 9.9.9 monitor - type 'help' for more information\r\n(qemu) ";

/// Records commands and answers a few of them like QEMU.
#[derive(Default)]
pub struct FakeVmm {
    pub paused: bool,
    pub log: Vec<Command>,
}

/// A synchronous migration that reports progress for `ticks` polls.
struct FakeMigration {
    ticks: u32,
    done: u32,
}

impl Pending for FakeMigration {
    fn poll(&mut self, out: &mut dyn Write) -> bool {
        self.done += 1;
        if self.done > self.ticks {
            let _ = out.write_all(b"\n");
            return true;
        }
        let _ = write!(out, "Completed {} %\r", self.done * 100 / (self.ticks + 1));
        false
    }
    fn interval(&self) -> Duration {
        Duration::from_millis(50)
    }
}

/// The fake as the transports share it: commands of different monitors take turns.
#[derive(Default)]
pub struct Fake(Mutex<FakeVmm>);

impl std::ops::Deref for Fake {
    type Target = Mutex<FakeVmm>;
    fn deref(&self) -> &Mutex<FakeVmm> {
        &self.0
    }
}

impl Vmm for Fake {
    fn execute(&self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).execute(command, out)
    }
}

impl FakeVmm {
    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String> {
        self.log.push(command.clone());
        match command {
            Command::Info(InfoCommand::Status) => {
                let state = if self.paused { "paused" } else { "running" };
                writeln!(out, "VM status: {state}").map_err(|e| e.to_string())?;
            }
            // A large answer, to fill a client's queue.
            Command::Info(InfoCommand::Qtree) => {
                let line = "bus: main-system-bus\n  type System\n".repeat(1 << 14);
                out.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
            }
            Command::Stop => self.paused = true,
            Command::Cont => self.paused = false,
            Command::Quit => return Ok(Outcome::Quit),
            Command::LoadVm { tag } => {
                return Err(format!("Snapshot '{tag}' does not exist in one or more devices"));
            }
            Command::Migrate { detach: false, uri, .. } => {
                // "slow" runs for minutes; anything else for three polls.
                let ticks = if uri == "slow" { 10_000 } else { 3 };
                return Ok(Outcome::Wait(Box::new(FakeMigration { ticks, done: 0 })));
            }
            Command::SystemReset => panic!("the fake VMM panics on system_reset"),
            _ => {}
        }
        Ok(Outcome::Done)
    }
}

pub fn fake_vmm() -> (Arc<Fake>, SharedVmm) {
    let vmm = Arc::new(Fake::default());
    let shared: SharedVmm = vmm.clone();
    (vmm, shared)
}

/// Reads until the data ends with `suffix` (or `timeout` passes); returns
/// everything read.
pub fn read_until(stream: &mut impl Read, suffix: &[u8], timeout: Duration) -> Vec<u8> {
    let deadline = Instant::now() + timeout;
    let mut data = Vec::new();
    let mut buf = [0u8; 65536];
    while !data.ends_with(suffix) && Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    data
}

/// Sends a line and returns the output after the echo, up to and
/// excluding the next prompt.
pub fn command(stream: &mut (impl Read + Write), line: &str) -> String {
    stream.write_all(format!("{line}\n").as_bytes()).expect("send");
    let data = read_until(stream, b"(qemu) ", Duration::from_secs(5));
    let text = String::from_utf8_lossy(&data).into_owned();
    let after_echo = text.split_once("\r\n").map(|(_, rest)| rest.to_string()).unwrap_or_default();
    after_echo.strip_suffix("(qemu) ").map(str::to_string).unwrap_or(after_echo)
}
