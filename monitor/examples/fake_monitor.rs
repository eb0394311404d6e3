//! Runs a monitor on a device given on the command line against a tiny
//! fake VMM, to compare its bytes with QEMU's by hand:
//!
//! ```text
//! cargo run -p monitor --example fake_monitor -- telnet:127.0.0.1:5555,server,nowait
//! ```

use std::io::Write;
use std::sync::{Arc, Mutex};

use monitor::{Command, InfoCommand, MonitorBuilder, Outcome, SharedVmm, Vmm};

struct Fake {
    paused: bool,
}

impl Vmm for Fake {
    fn execute(&mut self, command: &Command, out: &mut dyn Write) -> Result<Outcome, String> {
        match command {
            Command::Info(InfoCommand::Status) => {
                let state = if self.paused { "paused" } else { "running" };
                writeln!(out, "VM status: {state}").map_err(|e| e.to_string())?;
            }
            Command::Stop => self.paused = true,
            Command::Cont => self.paused = false,
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
    let vmm: SharedVmm = Arc::new(Mutex::new(Fake { paused: false }));
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
