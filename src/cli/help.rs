//! Texts printed by `-version`, `-h`, `-machine help` and `-cpu help`.

use super::options::CPU_MODELS;

pub fn version() -> String {
    format!(
        "godwit version {} (speaks QEMU 7.2's command line and monitor)\nA KVM hypervisor; see README.md for what it supports.\n",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn usage() -> String {
    format!(
        "\
godwit version {} - a KVM hypervisor with QEMU's command line
usage: godwit [options]

Standard options:
-h or -help     display this help and exit
-version        display version information and exit
-machine [type=]name[,accel=kvm]
                selects the machine (pc and q35 both give godwit's one machine; -machine help)
-accel kvm      select the accelerator (only kvm)
-enable-kvm     enable KVM (always on)
-cpu model      select CPU model (-cpu help for a list); the guest sees what KVM supports
-smp [cpus=]n[,sockets=s][,cores=c][,threads=t]
                number of virtual CPUs
-m [size=]megs  guest RAM size; suffixes K, M, G, T (default unit MiB)
-name string    set the name of the guest
-S              do not start the CPUs at start-up
-no-reboot      exit instead of rebooting

Boot options:
-kernel bzImage use bzImage as the kernel (Linux boot protocol, 64-bit entry)
-append cmdline use cmdline as the kernel command line
-initrd file    use file as the initial ram disk
-bios file      run firmware from file (placed under 4 GiB, entered at the reset vector)

Display and character devices:
-nographic      no display; the serial port uses this terminal (Ctrl-A x quits, Ctrl-A h for help)
-display none   no display
-serial dev     COM1 backend: stdio, pty, file:PATH, none
-nodefaults     create no default devices

Process options:
-pidfile file   write the process id to file
-daemonize      detach from the terminal after start-up
",
        env!("CARGO_PKG_VERSION")
    )
}

pub fn machines() -> String {
    "Supported machines are:\n\
     pc                   godwit's PC: 8259 PIC, IOAPIC, PIT, 8250 UART, i8042, CMOS RTC, PCI host bridge (default)\n\
     q35                  accepted as an alias of pc: godwit has no Q35 chipset or PCI Express\n"
        .to_string()
}

pub fn cpu_models() -> String {
    let mut s = String::from("Available CPU models (every model exposes the features KVM supports on this host, like 'host'):\n");
    for m in CPU_MODELS {
        s.push_str("x86 ");
        s.push_str(m);
        s.push('\n');
    }
    s
}
