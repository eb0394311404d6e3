//! godwit: a KVM hypervisor that speaks QEMU's command line and monitor.

mod boot;
mod cli;
mod config;
mod console;
mod cpu;
mod errtext;
mod events;
mod layout;
mod machine;
mod memory;
mod migration;
mod msg;
mod network;
mod process;
mod snapshot;
#[cfg(test)]
mod testutil;
mod vm;

use config::{Config, SerialBackend};
use console::Console;
use machine::{Machine, RunState};
use monitor::engine::Event;
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
            msg::set_timestamp(cfg.msg_timestamp);
            for w in &cfg.warnings {
                eprintln!("{}warning: {w}", msg::prefix());
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
    monitor::restore_terminal();
    eprintln!("{}{msg}", msg::prefix());
    std::process::exit(1);
}

/// The first run state: `-incoming` waits in `inmigrate`, `-S` in `prelaunch`.
fn initial_state(cfg: &Config) -> RunState {
    if cfg.incoming.is_some() {
        RunState::Inmigrate
    } else if cfg.start_paused {
        RunState::Prelaunch
    } else {
        RunState::Running
    }
}

/// Runs the machine until it powers off, is told to quit, or fails; returns the exit status.
fn run(cfg: &Config) -> Result<i32, String> {
    // Forking must come before any thread exists.
    let mut daemon = if cfg.daemonize {
        Some(process::daemonize().map_err(|e| format!("cannot daemonize: {e}"))?)
    } else {
        None
    };
    let _pidfile = cfg.pidfile.as_deref().map(process::Pidfile::create).transpose()?;
    // TLS credentials are read and checked now, as QEMU creates its objects.
    let tls = migration::tls::Objects::load(&cfg.objects).map_err(|e| e.to_string())?;
    let (tx, rx) = crossbeam_channel::unbounded();
    process::catch_termination(tx.clone()).map_err(|e| format!("cannot start signal thread: {e}"))?;
    let kvm = vm::kvm::open().map_err(|e| e.to_string())?;
    let console = Console::open(&cfg.serial).map_err(|e| e.to_string())?;
    let networks = Arc::new(network::Networks::open(cfg).map_err(|e| e.to_string())?);
    let machine = Machine::new(
        tx.clone(),
        cfg.name.clone(),
        initial_state(cfg),
        !cfg.start_paused,
        networks.clone(),
    );
    machine.no_reboot.store(cfg.no_reboot, std::sync::atomic::Ordering::Relaxed);
    *devices::bus::lock(&machine.outgoing.tls) = Arc::new(tls);
    if let Some(u) = &cfg.uuid {
        machine.set_uuid(u);
    }
    machine.no_shutdown.store(cfg.no_shutdown, std::sync::atomic::Ordering::Relaxed);
    machine.set_qom(machine::QomLayout::of(cfg));
    start_monitors(cfg, &machine, &console)?;
    let result = if cfg.machine == "none" {
        run_without_guest(&machine, &rx, &mut daemon)
    } else {
        run_machine(&kvm, cfg, &machine, &console, &rx, &mut daemon, &networks)
    };
    // QMP clients get the answer to their `quit` and the `SHUTDOWN` event first.
    machine.flush_monitors();
    // Whatever ended the run, the images get their cached metadata written back, as QEMU
    // closes every block device on its way out.
    if let Some(vm) = machine.vm() {
        // After any monitor command still working on the VM (a savevm finishes first).
        let _hold = vm.hold_run_state();
        vm.teardown();
    }
    // The guest's last serial output may still sit in a monitor multiplexer's queue.
    machine.drain_serial();
    console.restore_terminal();
    result
}

/// One monitor to start.
struct MonitorPlan<'a> {
    spec: std::borrow::Cow<'a, monitor::ChardevSpec>,
    text: &'a str,
    /// The option it came from, for messages (`-monitor`, `-qmp`, `-mon`).
    option: &'static str,
    with_serial: bool,
    /// QMP, and whether pretty.
    qmp: Option<bool>,
    label: Option<&'a str>,
}

/// Every monitor in command-line order: the `mon:stdio` multiplexer first, then `-monitor`,
/// `-qmp` and `-mon` as they were given.
fn monitor_plans(cfg: &Config) -> Result<Vec<MonitorPlan<'_>>, String> {
    let mut plans = Vec::new();
    let hmp = |text: &'static str, with_serial: bool| -> Result<MonitorPlan<'static>, String> {
        let spec = monitor::ChardevSpec::parse(text).map_err(|e| e.to_string())?;
        Ok(MonitorPlan {
            spec: std::borrow::Cow::Owned(spec),
            text,
            option: "-monitor",
            with_serial,
            qmp: None,
            label: None,
        })
    };
    if cfg.serial == (SerialBackend::Stdio { mux: true }) {
        plans.push(hmp("mon:stdio", true)?);
    }
    fn extra(m: &config::MonConfig) -> Option<MonitorPlan<'_>> {
        Some(MonitorPlan {
            spec: std::borrow::Cow::Borrowed(m.spec.as_ref()?),
            text: &m.text,
            option: if m.chardev.is_some() { "-mon" } else { "-qmp" },
            with_serial: false,
            qmp: m.control.then_some(m.pretty),
            label: m.label.as_deref(),
        })
    }
    for (i, text) in cfg.monitors.iter().enumerate() {
        plans.extend(cfg.extra_monitors.iter().filter(|m| m.after == i).filter_map(extra));
        // A -monitor spec that does not parse is reported by the start below.
        let spec = monitor::ChardevSpec::parse(text).unwrap_or(monitor::ChardevSpec::None);
        plans.push(MonitorPlan {
            spec: std::borrow::Cow::Owned(spec),
            text,
            option: "-monitor",
            with_serial: false,
            qmp: None,
            label: None,
        });
    }
    plans.extend(
        cfg.extra_monitors
            .iter()
            .filter(|m| m.after >= cfg.monitors.len())
            .filter_map(extra),
    );
    Ok(plans)
}

/// Starts every monitor (see [`monitor_plans`]), labelled compat_monitor0, 1, ... (a `-mon`
/// by its chardev's ID). A `server` without `nowait` blocks here until its first client
/// connects, as in QEMU.
fn start_monitors(cfg: &Config, machine: &Arc<Machine>, console: &Console) -> Result<(), String> {
    let engine: Arc<dyn monitor::engine::Engine> = Arc::new(machine::MachineEngine(machine.clone()));
    let vmm: monitor::SharedVmm = Arc::new(monitor::hmp::Hmp::new(engine.clone()));
    let version = env!("CARGO_PKG_VERSION");
    let serial_name = match &cfg.serial {
        SerialBackend::Stdio { mux: true } => "mux".to_string(),
        SerialBackend::Stdio { mux: false } => "stdio".to_string(),
        SerialBackend::Pty => "pty".to_string(),
        SerialBackend::File(p) => format!("file:{}", p.display()),
        SerialBackend::Fd(_) => "file".to_string(),
        SerialBackend::Null => "null".to_string(),
    };
    if cfg.serial != SerialBackend::Null {
        machine.add_chardev(&cfg.serial_label, serial_name);
    }
    let mut count = 0;
    for plan in monitor_plans(cfg)? {
        let label = plan.label.map(str::to_string).unwrap_or_else(|| {
            count += 1;
            monitor::compat_label(count - 1)
        });
        let mut b = monitor::MonitorBuilder::new(version, vmm.clone())
            .label(label)
            .option_name(plan.option);
        if plan.with_serial {
            b = b.serial(console.frontend());
        }
        if let Some(pretty) = plan.qmp {
            b = b.qmp(engine.clone(), pretty);
        }
        let started = if plan.option == "-monitor" {
            b.start(plan.text)
        } else {
            b.start_spec(plan.spec.into_owned(), plan.text)
        };
        let h = started.map_err(|e| {
            let lines = e.report_lines("godwit", plan.text);
            let stripped: Vec<String> = lines
                .iter()
                .map(|l| {
                    l.strip_prefix("godwit: ")
                        .unwrap_or(l)
                        .replacen("-monitor ", &format!("{} ", plan.option), 1)
                })
                .collect();
            stripped.join("\ngodwit: ")
        })?;
        if plan.with_serial {
            if let Some(w) = h.serial_writer() {
                console.set_output(Box::new(w));
            }
        }
        if let Some(msg) = h.redirect_message() {
            println!("{msg}");
        }
        machine.add_monitor(h);
    }
    Ok(())
}

/// `-machine none`: no guest, only the monitors (libvirt's capability probe runs godwit
/// so), until `quit` or a signal.
fn run_without_guest(
    machine: &Arc<Machine>,
    rx: &crossbeam_channel::Receiver<VmEvent>,
    daemon: &mut Option<process::Daemon>,
) -> Result<i32, String> {
    machine.set_ready();
    if let Some(d) = daemon.take() {
        d.ready();
    }
    loop {
        let event = rx.recv().map_err(|_| "event channel closed".to_string())?;
        if matches!(event, VmEvent::QuitCommand | VmEvent::Signal { .. }) {
            return Ok(end_run(machine, &event));
        }
    }
}

fn run_machine(
    kvm: &kvm_ioctls::Kvm,
    cfg: &Config,
    machine: &Arc<Machine>,
    console: &Console,
    rx: &crossbeam_channel::Receiver<VmEvent>,
    daemon: &mut Option<process::Daemon>,
    networks: &network::Networks,
) -> Result<i32, String> {
    let mut cfg = cfg.clone();
    let tx = machine_events(machine);
    loop {
        // -loadvm applies to the first boot only; the VM waits, paused, until it is loaded.
        let load_tag = cfg.loadvm.take();
        cfg.start_paused = machine.state() != RunState::Running || load_tag.is_some();
        let vm = Vm::build_with(kvm, &cfg, Box::new(console.output()), tx.clone(), networks);
        let vm = Arc::new(vm.map_err(|e| e.to_string())?);
        console.attach(vm.serial());
        vm.start().map_err(|e| e.to_string())?;
        machine.set_vm(vm.clone());
        if let Some(tag) = load_tag {
            snapshot::load(&vm, &tag).map_err(|e| e.to_string())?;
            if machine.state() == RunState::Running {
                vm.resume();
            }
        }
        if let Some(spec) = &cfg.incoming {
            machine::start_incoming(spec, vm.clone(), tx.clone(), machine.incoming.clone(), machine.outgoing.clone())?;
        }
        machine.set_ready();
        if let Some(d) = daemon.take() {
            d.ready();
        }
        // A reset asked for while an incoming post-copy still fills RAM waits for its end.
        let mut deferred_reset = None;
        loop {
            let event = rx.recv().map_err(|_| "event channel closed".to_string())?;
            match event {
                VmEvent::Incoming(Ok(())) => {
                    // After post-copy the guest was started at the switch.
                    if !devices::bus::lock(&machine.incoming).postcopy {
                        start_migrated_guest(machine, &vm)?;
                    }
                    machine::finish_incoming(&machine.incoming, &machine.outgoing);
                    if let Some(reset) = deferred_reset.take() {
                        let _ = tx.send(reset);
                    }
                }
                VmEvent::Reset | VmEvent::ResetCommand if incoming_postcopy(machine) => {
                    // The VM cannot be rebuilt while the source still sends its pages.
                    deferred_reset = Some(event);
                }
                VmEvent::PostcopyRun => {
                    start_migrated_guest(machine, &vm)?;
                    machine::postcopy_running(&machine.incoming, &machine.outgoing);
                }
                VmEvent::Incoming(Err(e)) => return Err(format!("load of migration failed: {e}")),
                VmEvent::Reset | VmEvent::ResetCommand if !cfg.no_reboot => {
                    if event == VmEvent::Reset {
                        machine.bus().emit(Event::reset(true, "guest-reset"));
                    }
                    if machine.outgoing.in_postcopy() {
                        // The guest lives at the destination, which still needs this
                        // one's pages: nothing here is reset.
                        continue;
                    }
                    // The VM is about to be rebuilt: a migration of it must end first (the
                    // new one could not lock the images the old one still holds).
                    machine.end_outgoing("the guest was reset during the migration");
                    if machine.state() == RunState::Postmigrate {
                        // The guest now lives at the destination; this one stays as it is.
                        continue;
                    }
                    {
                        // A monitor command working on the VM (savevm, say) finishes first.
                        let _hold = vm.hold_run_state();
                        vm.teardown();
                    }
                    machine.clear_vm();
                    // Events queued by the old machine (a second reset request) are stale,
                    // but a quit or a signal meanwhile is the user's: it still ends the run.
                    while let Ok(stale) = rx.try_recv() {
                        if matches!(stale, VmEvent::QuitCommand | VmEvent::Signal { .. }) {
                            return Ok(end_run(machine, &stale));
                        }
                    }
                    // A reset outside `running` lands in `prelaunch`, as in QEMU; a reboot
                    // after an incoming migration boots the kernel afresh.
                    if machine.state() != RunState::Running {
                        machine.set_state(RunState::Prelaunch);
                    }
                    cfg.incoming = None;
                    break;
                }
                VmEvent::Shutdown | VmEvent::Reset | VmEvent::ResetCommand
                    if machine.no_shutdown.load(std::sync::atomic::Ordering::Relaxed) =>
                {
                    // -no-shutdown: the guest stops in `shutdown` and the process stays; with
                    // -no-reboot a reset is such a shutdown too (`system_reset` announced
                    // itself). Only `quit` or a signal ends the run then.
                    match event {
                        VmEvent::Shutdown => machine.bus().emit(Event::shutdown(true, "guest-shutdown")),
                        VmEvent::Reset => machine.bus().emit(Event::shutdown(true, "guest-reset")),
                        _ => {}
                    }
                    vm.pause();
                    machine.set_state(RunState::Shutdown);
                }
                VmEvent::Reset | VmEvent::ResetCommand | VmEvent::Shutdown | VmEvent::QuitCommand | VmEvent::Signal { .. } => {
                    return Ok(end_run(machine, &event));
                }
                VmEvent::Error(msg) => {
                    machine.set_state(RunState::InternalError);
                    return Err(msg);
                }
            }
        }
    }
}

/// An event that ends the run: QMP's `SHUTDOWN` with QEMU's reason (`quit` and
/// `system_reset` announced themselves); the exit status.
fn end_run(machine: &Machine, event: &VmEvent) -> i32 {
    let (guest, reason) = match event {
        VmEvent::Reset => (true, "guest-reset"),
        VmEvent::Shutdown => (true, "guest-shutdown"),
        VmEvent::Signal { signo, pid } => {
            eprintln!("godwit: terminating on signal {signo} from pid {pid}");
            (false, "host-signal")
        }
        _ => return 0,
    };
    machine.bus().emit(Event::shutdown(guest, reason));
    0
}

/// The sender devices and vCPUs report machine events on.
fn machine_events(machine: &Machine) -> crossbeam_channel::Sender<VmEvent> {
    machine.events()
}

/// An incoming post-copy runs the guest while its RAM is still arriving.
fn incoming_postcopy(machine: &Machine) -> bool {
    let inc = devices::bus::lock(&machine.incoming);
    inc.postcopy && inc.stats.status.in_postcopy()
}

/// A migrated guest is loaded (or, in post-copy, its state is): it runs, unless the
/// destination was started with `-S` (or stopped).
fn start_migrated_guest(machine: &Machine, vm: &Vm) -> Result<(), String> {
    machine.announce_after_migration();
    if machine.autostart() {
        // late-block-activate left the disks for the start (a `cont` takes them itself).
        if vm.late_block_activate.load(std::sync::atomic::Ordering::Relaxed) {
            vm.activate_disks()
                .map_err(|e| format!("cannot take the disks over after the migration: {e}"))?;
        }
        vm.resume();
        machine.set_state(RunState::Running);
    } else {
        machine.set_state(RunState::Paused);
    }
    Ok(())
}
