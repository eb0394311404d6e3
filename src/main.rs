//! godwit: a KVM hypervisor that speaks QEMU's command line and monitor.

mod boot;
mod cli;
mod config;
mod console;
mod errtext;
mod hmp;
mod incoming;
mod cpu;
mod layout;
mod memory;
mod migration;
mod process;
mod vm;

use config::Config;
use console::Console;
use std::sync::Arc;
use vm::{Vm, VmEvent};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match cli::parse(args) {
        Ok(cli::Action::Print(text)) => {
            print!("{text}");
            return;
        }
        Ok(cli::Action::Run(cfg)) => {
            for w in &cfg.warnings {
                eprintln!("godwit: warning: {w}");
            }
            cfg
        }
        Err(e) => fail(&e.to_string()),
    };
    let code = match run(&cfg) {
        Ok(code) => code,
        Err(msg) => fail(&msg),
    };
    std::process::exit(code);
}

fn fail(msg: &str) -> ! {
    eprintln!("godwit: {msg}");
    std::process::exit(1);
}

/// Runs the machine until it powers off, is told to quit, or fails; returns the exit status.
fn run(cfg: &Config) -> Result<i32, String> {
    // Forking must come before any thread exists.
    let mut daemon = if cfg.daemonize { Some(process::daemonize().map_err(|e| format!("cannot daemonize: {e}"))?) } else { None };
    let _pidfile = cfg.pidfile.as_deref().map(process::Pidfile::create).transpose()?;
    let (tx, rx) = crossbeam_channel::unbounded();
    process::catch_termination(tx.clone()).map_err(|e| format!("cannot start signal thread: {e}"))?;
    let kvm = vm::kvm::open().map_err(|e| e.to_string())?;
    let console = Console::open(&cfg.serial, tx.clone()).map_err(|e| e.to_string())?;
    let result = run_machine(&kvm, cfg, &console, &tx, &rx, &mut daemon);
    console.restore_terminal();
    result
}

fn run_machine(
    kvm: &kvm_ioctls::Kvm,
    cfg: &Config,
    console: &Console,
    tx: &crossbeam_channel::Sender<VmEvent>,
    rx: &crossbeam_channel::Receiver<VmEvent>,
    daemon: &mut Option<process::Daemon>,
) -> Result<i32, String> {
    let mut cfg = cfg.clone();
    loop {
        let vm = Arc::new(Vm::build(kvm, &cfg, Box::new(console.output()), tx.clone()).map_err(|e| e.to_string())?);
        console.attach(vm.serial());
        vm.start().map_err(|e| e.to_string())?;
        if let Some(uri) = &cfg.incoming {
            incoming::start(uri, vm.clone(), tx.clone())?;
        }
        if let Some(d) = daemon.take() {
            d.ready();
        }
        loop {
            let event = rx.recv().map_err(|_| "event channel closed".to_string())?;
            match event {
                VmEvent::Incoming(Ok(())) => {
                    if !cfg.start_paused {
                        vm.resume();
                    }
                    continue;
                }
                VmEvent::Incoming(Err(e)) => return Err(format!("load of migration failed: {e}")),
                VmEvent::Reset if !cfg.no_reboot => {
                    vm.teardown();
                    // Events queued by the old machine (a second reset request) are stale.
                    while rx.try_recv().is_ok() {}
                    // A reboot after an incoming migration boots the kernel afresh.
                    cfg.incoming = None;
                    break;
                }
                VmEvent::Reset | VmEvent::Shutdown => return Ok(0),
                VmEvent::Quit => {
                    eprint!("{}", console::TERMINATED);
                    return Ok(0);
                }
                VmEvent::Signal { signo, pid } => {
                    eprintln!("godwit: terminating on signal {signo} from pid {pid}");
                    return Ok(0);
                }
                VmEvent::Error(msg) => return Err(msg),
            }
        }
    }
}
