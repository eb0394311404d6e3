//! Runs a monitor on a device given on the command line against a tiny
//! fake VMM, to compare its bytes with QEMU's by hand:
//!
//! ```text
//! cargo run -p monitor --example fake_monitor -- telnet:127.0.0.1:5555,server,nowait
//! ```

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use monitor::{Command, InfoCommand, MonitorBuilder, Outcome, SharedVmm, Vmm};

struct Fake {
    paused: AtomicBool,
}

impl Vmm for Fake {
    fn execute(&self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String> {
        match command {
            Command::Info(InfoCommand::Status) => {
                let state = if self.paused.load(Ordering::SeqCst) { "paused" } else { "running" };
                writeln!(out, "VM status: {state}").map_err(|e| e.to_string())?;
            }
            Command::Stop => self.paused.store(true, Ordering::SeqCst),
            Command::Cont => self.paused.store(false, Ordering::SeqCst),
            Command::Quit => std::process::exit(0),
            Command::SaveVm { .. } | Command::LoadVm { .. } => {
                return Err("no block device can store vmstate for snapshot".into());
            }
            _ => {}
        }
        Ok(Outcome::Done)
    }
}

fn main() {
    let spec = std::env::args().nth(1).unwrap_or_else(|| "stdio".into());
    let vmm: SharedVmm = Arc::new(Fake {
        paused: AtomicBool::new(false),
    });
    match MonitorBuilder::new("7.2.22", vmm).start(&spec) {
        Ok(handle) => {
            if let Some(message) = handle.redirect_message() {
                println!("{message}");
            }
            loop {
                std::thread::park();
            }
        }
        Err(e) => {
            for line in e.report_lines("fake_monitor", &spec) {
                eprintln!("{line}");
            }
            std::process::exit(1);
        }
    }
}
