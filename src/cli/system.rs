//! Options about the process and the machine's fixed parts that libvirt always writes:
//! `-uuid`, `-rtc`, `-boot`, `-overcommit`, `-audiodev`, `-msg`, `-sandbox`, `-no-shutdown`,
//! `-no-acpi`, `-no-user-config`. Each is taken with QEMU's meaning where godwit has it and
//! refused in one line where it does not.

use super::CliError;
use super::drive::split_options;
use crate::config::Config;

fn fail<T>(option: &str, value: &str, msg: impl std::fmt::Display) -> Result<T, CliError> {
    Err(CliError(format!("-{option} {value}: {msg}")))
}

/// `key=value` pairs; a bare first item is `first_key`'s value.
fn items(value: &str, first_key: &str) -> Vec<(String, String)> {
    split_options(value)
        .into_iter()
        .enumerate()
        .map(|(i, p)| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None if i == 0 => (first_key.to_string(), p),
            None => (p, "on".to_string()),
        })
        .collect()
}

/// `-uuid U`: 8-4-4-4-12 hexadecimal digits.
pub fn uuid(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let groups: Vec<&str> = value.split('-').collect();
    let lens = [8, 4, 4, 4, 12];
    let ok = groups.len() == 5
        && groups
            .iter()
            .zip(lens)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return fail("uuid", value, "invalid UUID");
    }
    cfg.uuid = Some(value.to_ascii_lowercase());
    Ok(())
}

/// `-rtc base=utc[,clock=host][,driftfix=none|slew]`: godwit's CMOS clock shows the host's
/// UTC time.
pub fn rtc(value: &str) -> Result<(), CliError> {
    for (k, v) in items(value, "base") {
        let ok = match k.as_str() {
            "base" => v == "utc",
            "clock" => v == "host",
            "driftfix" => v == "none" || v == "slew",
            _ => return fail("rtc", value, format!("Invalid parameter '{k}'")),
        };
        if !ok {
            return fail(
                "rtc",
                value,
                format!("godwit's RTC keeps the host's UTC time ({k}={v} is not supported)"),
            );
        }
    }
    Ok(())
}

/// `-boot [order=..][,once=..][,menu=..][,strict=..][,reboot-timeout=..][,splash-time=..]`:
/// godwit boots its kernel or firmware directly, so the firmware's boot order is moot.
pub fn boot(value: &str) -> Result<(), CliError> {
    for (k, v) in items(value, "order") {
        match k.as_str() {
            "order" | "once" | "reboot-timeout" | "splash-time" | "splash" => {}
            "menu" | "strict" => {
                if !matches!(v.as_str(), "on" | "off" | "yes" | "no" | "true" | "false") {
                    return fail("boot", value, format!("Parameter '{k}' expects 'on' or 'off'"));
                }
            }
            _ => return fail("boot", value, format!("Invalid parameter '{k}'")),
        }
    }
    Ok(())
}

/// `-overcommit mem-lock=off[,cpu-pm=off]`: godwit neither locks guest memory nor passes
/// the host's power management through.
pub fn overcommit(value: &str) -> Result<(), CliError> {
    for (k, v) in items(value, "mem-lock") {
        match (k.as_str(), v.as_str()) {
            ("mem-lock" | "cpu-pm", "off" | "no" | "false") => {}
            ("mem-lock" | "cpu-pm", _) => return fail("overcommit", value, format!("godwit does not support {k}={v}")),
            _ => return fail("overcommit", value, format!("Invalid parameter '{k}'")),
        }
    }
    Ok(())
}

/// `-audiodev none,id=ID` (or JSON): godwit has no sound device, so only the null
/// driver has a meaning.
pub fn audiodev(value: &str) -> Result<(), CliError> {
    let text = super::json::keyval("audiodev", value, "driver")?;
    let parts = items(&text, "driver");
    let driver = parts.iter().find(|(k, _)| k == "driver").map(|(_, v)| v.as_str()).unwrap_or("");
    if driver != "none" {
        return fail(
            "audiodev",
            value,
            format!("godwit has no sound device: only the 'none' driver (not '{driver}')"),
        );
    }
    if !parts.iter().any(|(k, _)| k == "id") {
        return fail("audiodev", value, "Parameter 'id' is missing");
    }
    Ok(())
}

/// `-msg timestamp=on|off[,guest-name=..]`.
pub fn msg(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    for (k, v) in items(value, "timestamp") {
        match (k.as_str(), v.as_str()) {
            ("timestamp", "on" | "yes" | "true") => cfg.msg_timestamp = true,
            ("timestamp", "off" | "no" | "false") => cfg.msg_timestamp = false,
            ("guest-name", "off" | "no" | "false") => {}
            _ => return fail("msg", value, format!("Invalid parameter '{k}'")),
        }
    }
    Ok(())
}

/// `-sandbox off`: godwit installs no seccomp filter, so `on` is refused rather than
/// promised.
pub fn sandbox(value: &str) -> Result<(), CliError> {
    match value.split(',').next().unwrap_or("") {
        "off" | "no" | "false" => Ok(()),
        _ => fail("sandbox", value, "godwit has no seccomp sandbox (only -sandbox off)"),
    }
}

#[cfg(test)]
mod tests {

    use crate::cli::test_line as run;

    #[test]
    fn libvirt_line_parts() {
        let c = run(r#"-kernel k -uuid 9336A59F-ba5a-42f8-8ce7-a47484c3b879 -rtc base=utc -no-shutdown -no-acpi -boot strict=on -overcommit mem-lock=off -audiodev {"id":"audio1","driver":"none"} -msg timestamp=on -no-user-config -sandbox off"#).unwrap();
        assert_eq!(c.uuid.as_deref(), Some("9336a59f-ba5a-42f8-8ce7-a47484c3b879"));
        assert!(c.no_shutdown && c.msg_timestamp);
        assert_eq!(run("-kernel k -uuid 1234").unwrap_err(), "-uuid 1234: invalid UUID");
        assert_eq!(
            run("-kernel k -rtc base=localtime").unwrap_err(),
            "-rtc base=localtime: godwit's RTC keeps the host's UTC time (base=localtime is not supported)"
        );
        assert_eq!(
            run("-kernel k -sandbox on,obsolete=deny").unwrap_err(),
            "-sandbox on,obsolete=deny: godwit has no seccomp sandbox (only -sandbox off)"
        );
        assert_eq!(
            run("-kernel k -overcommit mem-lock=on").unwrap_err(),
            "-overcommit mem-lock=on: godwit does not support mem-lock=on"
        );
        assert_eq!(
            run("-kernel k -audiodev pa,id=a").unwrap_err(),
            "-audiodev pa,id=a: godwit has no sound device: only the 'none' driver (not 'pa')"
        );
        assert_eq!(
            run("-kernel k -boot bogus=1").unwrap_err(),
            "-boot bogus=1: Invalid parameter 'bogus'"
        );
        assert_eq!(
            run("-kernel k -device virtio-blk-pci,drive=n,id=virtio-disk0").unwrap_err(),
            "-device virtio-blk-pci,drive=n,id=virtio-disk0: Property 'virtio-blk-device.drive' can't find value 'n'"
        );
    }
}
