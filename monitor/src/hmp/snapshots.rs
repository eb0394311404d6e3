//! `info snapshots` in QEMU 7.2's table layout.

use crate::engine::{DiskSnapshots, SnapshotInfo};

/// QEMU's `size_to_str`: three significant digits and a binary unit (`1.12 MiB`, `0 B`).
pub fn size_to_str(v: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    // Switch to the next unit once the number would reach 1000, as QEMU does.
    let mut i = 0;
    while i + 1 < UNITS.len() && (v as f64) / ((1u64 << (10 * i)) as f64) >= 1000.0 {
        i += 1;
    }
    let x = v as f64 / (1u64 << (10 * i)) as f64;
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    let mut s = format!("{x:.digits$}");
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s} {}", UNITS[i])
}

/// Seconds since the epoch as local time, `YYYY-MM-DD HH:MM:SS`.
fn local_date(secs: u64) -> String {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r fills the tm we own from a plain time value.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

fn vm_clock(s: &SnapshotInfo) -> String {
    let ms = s.vm_clock_sec * 1000 + s.vm_clock_nsec / 1_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn header() -> String {
    format!(
        "{:<10}{:<17}{:>8}{:>20}{:>13}{:>11}\n",
        "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"
    )
}

fn row(id: &str, s: &SnapshotInfo) -> String {
    let icount = s.icount.map(|i| i.to_string()).unwrap_or_default();
    format!(
        "{id:<9} {:<16} {:>8}{:>20}{:>13}{:>11}\n",
        s.name,
        size_to_str(s.vm_state_size),
        local_date(s.date_sec),
        vm_clock(s),
        icount
    )
}

/// The whole listing: snapshots on every disk (ID shown as `--`), then, per disk, those
/// present on it alone. The first disk is the one holding the VM state.
pub fn format_snapshots(disks: &[DiskSnapshots]) -> String {
    let Some(first) = disks.first() else { return String::new() };
    let on_all = |name: &str| disks.iter().all(|d| d.snapshots.iter().any(|s| s.name == name));
    let common: Vec<&SnapshotInfo> = first.snapshots.iter().filter(|s| on_all(&s.name)).collect();
    let partial_any = disks.iter().any(|d| d.snapshots.iter().any(|s| !on_all(&s.name)));
    if common.is_empty() && !partial_any {
        return "There is no snapshot available.\n".into();
    }
    let mut o = String::from("List of snapshots present on all disks:\n");
    o.push_str(&header());
    if common.is_empty() {
        o.push_str("None\n");
    }
    for s in common {
        o.push_str(&row("--", s));
    }
    for d in disks {
        let partial: Vec<&SnapshotInfo> = d.snapshots.iter().filter(|s| !on_all(&s.name)).collect();
        if partial.is_empty() {
            continue;
        }
        o.push_str(&format!("\nList of partial (non-loadable) snapshots on '{}':\n", d.device));
        o.push_str(&header());
        for s in partial {
            o.push_str(&row(&s.id, s));
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, name: &str, size: u64, clock_ns: u64) -> SnapshotInfo {
        SnapshotInfo {
            id: id.into(),
            name: name.into(),
            vm_state_size: size,
            date_sec: 0,
            date_nsec: 0,
            vm_clock_sec: clock_ns / 1_000_000_000,
            vm_clock_nsec: clock_ns % 1_000_000_000,
            icount: None,
        }
    }

    fn disk(name: &str, snapshots: Vec<SnapshotInfo>) -> DiskSnapshots {
        DiskSnapshots {
            device: name.into(),
            snapshots,
        }
    }

    #[test]
    fn sizes_like_qemu() {
        assert_eq!(size_to_str(0), "0 B");
        assert_eq!(size_to_str(1_174_405), "1.12 MiB");
        assert_eq!(size_to_str(739 << 20), "739 MiB");
        assert_eq!(size_to_str(1000), "0.98 KiB");
        assert_eq!(size_to_str(1536), "1.5 KiB");
        assert_eq!(size_to_str(12 << 30), "12 GiB");
    }

    #[test]
    fn layout() {
        let t = format_snapshots(&[disk("disk0", vec![snap("1", "snap1", 1_174_405, 1_581_000_000)])]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[1],
            "ID        TAG               VM SIZE                DATE     VM CLOCK     ICOUNT"
        );
        assert!(lines[2].starts_with("--        snap1            1.12 MiB "), "{t}");
        assert!(lines[2].ends_with(" 00:00:01.581           "), "{t}");
        assert_eq!(format_snapshots(&[disk("disk0", vec![])]), "There is no snapshot available.\n");
        let p = format_snapshots(&[
            disk("a", vec![snap("1", "both", 10, 0), snap("2", "only", 0, 0)]),
            disk("b", vec![snap("1", "both", 0, 0)]),
        ]);
        assert!(p.contains("\nList of partial (non-loadable) snapshots on 'a':\nID "), "{p}");
        assert!(p.contains("\n2         only                  0 B"), "{p}");
    }
}
