//! COM1 on a character device, as libvirt spells it: `-chardev file,id=ID,path=P[,append=on]`
//! and `-device isa-serial,chardev=ID[,id=..][,index=0]` (`-serial` is in `options.rs`).
//! A `/dev/fdset/N` path is a descriptor passed with `-add-fd`.

use super::CliError;
use super::drive::split_options;
use crate::config::{Config, SerialBackend};

/// `-chardev file,id=ID,path=PATH[,append=on|off]`.
pub fn chardev_file(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let fail = |m: &str| CliError(format!("-chardev {value}: {m}"));
    let (mut id, mut path, mut append) = (None, None, false);
    for part in split_options(value).into_iter().skip(1) {
        let (k, v) = part.split_once('=').unwrap_or((part.as_str(), "on"));
        match k {
            "id" => id = Some(v.to_string()),
            "path" => path = Some(v.to_string()),
            "append" => {
                append = match v {
                    "on" | "yes" | "true" => true,
                    "off" | "no" | "false" => false,
                    _ => return Err(fail("Parameter 'append' expects 'on' or 'off'")),
                }
            }
            "logfile" | "logappend" | "mux" | "in" => {
                return Err(fail(&format!("godwit's file chardev has no '{k}' option")));
            }
            _ => return Err(fail(&format!("Invalid parameter '{k}'"))),
        }
    }
    let Some(id) = id else {
        return Err(fail("chardev: no id specified"));
    };
    let Some(path) = path else {
        return Err(fail("chardev: file: no filename given"));
    };
    if !append && !path.starts_with("/dev/fdset/") {
        return Err(fail("godwit appends to serial files; give append=on"));
    }
    let taken = cfg.file_chardevs.iter().any(|(i, _)| *i == id) || cfg.chardevs.iter().any(|(i, _)| *i == id);
    if taken {
        return Err(fail(&format!(
            "attempt to add duplicate property '{id}' to object (type 'container')"
        )));
    }
    let backend = match super::fdset::resolve(cfg, &path).map_err(|m| fail(&m))? {
        Some(fd) => SerialBackend::Fd(fd),
        None => SerialBackend::File(path.into()),
    };
    cfg.file_chardevs.push((id, backend));
    Ok(())
}

/// `-device isa-serial,chardev=ID[,id=NAME][,index=0]`: godwit's one UART, COM1.
pub fn isa_serial(spec: &str, opts: &[(String, String)], cfg: &mut Config) -> Result<(), CliError> {
    let fail = |m: &str| CliError(format!("-device {spec}: {m}"));
    let mut chardev = None;
    for (k, v) in opts {
        match k.as_str() {
            "chardev" => chardev = Some(v.clone()),
            "id" => cfg.serial_device_id = Some(v.clone()),
            "index" | "iobase" | "irq" => {
                let ok = matches!(
                    (k.as_str(), v.as_str()),
                    ("index", "0") | ("iobase", "1016" | "0x3f8") | ("irq", "4")
                );
                if !ok {
                    return Err(fail("godwit has one serial port: COM1 (index 0, I/O 0x3f8, IRQ 4)"));
                }
            }
            _ => return Err(fail(&format!("Property 'isa-serial.{k}' not found"))),
        }
    }
    if cfg.isa_serial.is_some() {
        return Err(fail("godwit has one serial port (COM1)"));
    }
    let Some(chardev) = chardev else {
        return Err(fail("Property 'chardev' is required: godwit's serial port needs a -chardev"));
    };
    cfg.isa_serial = Some(chardev);
    Ok(())
}

/// Once every option is read: the backend of `-device isa-serial`, if one was given
/// (`serial` is what `-serial` chose).
pub fn finish(cfg: &mut Config, serial: &Option<SerialBackend>) -> Result<Option<SerialBackend>, CliError> {
    let Some(id) = cfg.isa_serial.clone() else { return Ok(None) };
    if serial.is_some() {
        return Err(CliError(
            "-device isa-serial: godwit has one serial port (COM1), already given with -serial".into(),
        ));
    }
    let backend = cfg
        .file_chardevs
        .iter()
        .find(|(i, _)| *i == id)
        .map(|(_, b)| b.clone())
        .ok_or_else(|| CliError(format!("-device isa-serial: Property 'isa-serial.chardev' can't find value '{id}'")))?;
    cfg.serial_label = id;
    Ok(Some(backend))
}

#[cfg(test)]
mod tests {
    use crate::config::SerialBackend;

    use crate::cli::test_line as run;

    #[test]
    fn libvirt_serial() {
        let f = std::fs::File::open("/dev/null").unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
        let c = run(&format!(
            "-kernel k -add-fd set=0,fd={fd},opaque=serial0-source -chardev file,id=charserial0,path=/dev/fdset/0,append=on -device {{\"driver\":\"isa-serial\",\"chardev\":\"charserial0\",\"id\":\"serial0\",\"index\":0}}"
        ))
        .unwrap();
        assert_eq!(c.serial, SerialBackend::Fd(fd));
        assert_eq!(c.serial_label, "charserial0");
        let p = run("-kernel k -chardev file,id=s,path=/tmp/s.log,append=on -device isa-serial,chardev=s").unwrap();
        assert_eq!(p.serial, SerialBackend::File("/tmp/s.log".into()));
        assert_eq!(
            run("-kernel k -device isa-serial,chardev=nope").unwrap_err(),
            "-device isa-serial: Property 'isa-serial.chardev' can't find value 'nope'"
        );
        assert_eq!(
            run("-kernel k -chardev file,id=s,path=/dev/fdset/5").unwrap_err(),
            "-chardev file,id=s,path=/dev/fdset/5: Could not open '/dev/fdset/5': No such file or directory"
        );
        assert_eq!(
            run("-kernel k -device isa-serial,chardev=s,index=1").unwrap_err(),
            "-device isa-serial,chardev=s,index=1: godwit has one serial port: COM1 (index 0, I/O 0x3f8, IRQ 4)"
        );
        assert!(run("-kernel k -serial pty -chardev file,id=s,path=/tmp/x,append=on -device isa-serial,chardev=s").is_err());
    }
}
