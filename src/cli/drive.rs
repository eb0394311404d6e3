//! `-drive`, `-hda`..`-hdd` and bare image paths. godwit has no IDE controller: every disk
//! becomes a virtio-blk device, whatever `if=` says (`if=none` needs `-device`, which godwit
//! does not have).

use super::CliError;
use crate::config::{Config, DriveConfig};

fn next_virtio_name(cfg: &Config) -> String {
    let n = cfg.drives.iter().filter(|d| d.id.starts_with("virtio")).count();
    format!("virtio{n}")
}

/// Parses a `-drive` value.
pub fn parse(spec: &str, cfg: &Config) -> Result<DriveConfig, CliError> {
    let err = |m: String| CliError(format!("-drive {spec}: {m}"));
    let mut file = None;
    let (mut format, mut read_only, mut snapshot, mut ignore_flush, mut id, mut iface) =
        (None, false, false, false, None, "ide".to_string());
    for part in split_options(spec) {
        let (k, v) = part.split_once('=').ok_or_else(|| err(format!("Invalid parameter '{part}'")))?;
        let on = || match v {
            "on" | "yes" | "true" => Ok(true),
            "off" | "no" | "false" => Ok(false),
            _ => Err(err(format!("Parameter '{k}' expects 'on' or 'off'"))),
        };
        match k {
            "file" => file = Some(v.to_string()),
            "format" => match v {
                "raw" | "qcow2" => format = Some(v.to_string()),
                _ => return Err(err(format!("Unknown driver '{v}'"))),
            },
            "if" => match v {
                "virtio" | "ide" | "scsi" | "sd" => iface = v.to_string(),
                "none" => return Err(err("if=none needs -device, which godwit does not have; use if=virtio".into())),
                _ => return Err(err(format!("unsupported bus type '{v}'"))),
            },
            "readonly" => read_only = on()?,
            "snapshot" => snapshot = on()?,
            "id" => id = Some(v.to_string()),
            "cache" => match v {
                "unsafe" => ignore_flush = true,
                "writeback" | "none" | "writethrough" | "directsync" => {}
                _ => return Err(err(format!("invalid cache option '{v}'"))),
            },
            "media" if v == "disk" => {}
            "media" => return Err(err(format!("media={v} is not supported (godwit has disks only)"))),
            // Accepted tuning knobs that change nothing in godwit.
            "aio" | "discard" | "detect-zeroes" | "werror" | "rerror" | "index" | "bus" | "unit" => {}
            _ => return Err(err(format!("Invalid parameter '{k}'"))),
        }
    }
    let file = file.ok_or_else(|| err("no file given (file=PATH)".into()))?;
    let id = id.unwrap_or_else(|| {
        if iface == "virtio" {
            next_virtio_name(cfg)
        } else {
            format!("{iface}{}", cfg.drives.len())
        }
    });
    Ok(DriveConfig {
        file: file.into(),
        format,
        read_only,
        snapshot,
        ignore_flush,
        id,
        spec: spec.to_string(),
        blockdev: None,
    })
}

/// `-hda` (index 0) .. `-hdd` (index 3): QEMU's IDE names, attached as virtio.
pub fn legacy(path: &str, index: usize) -> DriveConfig {
    DriveConfig {
        file: path.into(),
        format: None,
        read_only: false,
        snapshot: false,
        ignore_flush: false,
        id: format!("ide{}-hd{}", index / 2, index % 2),
        spec: path.to_string(),
        blockdev: None,
    }
}

/// Splits `a=b,c=d`, where `,,` stands for a literal comma (QEMU's escaping).
pub(super) fn split_options(s: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                out.last_mut().expect("non-empty").push(',');
            } else {
                out.push(String::new());
            }
        } else {
            out.last_mut().expect("non-empty").push(c);
        }
    }
    out.retain(|p| !p.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let cfg = Config::default();
        let d = parse("file=/img/a.qcow2,format=qcow2,if=virtio,readonly=on,cache=unsafe", &cfg).unwrap();
        assert_eq!(
            (
                d.file.to_str().unwrap(),
                d.format.as_deref(),
                d.read_only,
                d.ignore_flush,
                d.id.as_str()
            ),
            ("/img/a.qcow2", Some("qcow2"), true, true, "virtio0")
        );
        assert_eq!(parse("file=a,,b.img,id=disk1", &cfg).unwrap().file.to_str(), Some("a,b.img"));
        assert_eq!(parse("file=a.img,id=disk1", &cfg).unwrap().id, "disk1");
        assert_eq!(
            parse("format=qcow2", &cfg).unwrap_err().0,
            "-drive format=qcow2: no file given (file=PATH)"
        );
        assert_eq!(
            parse("file=a,format=vmdk", &cfg).unwrap_err().0,
            "-drive file=a,format=vmdk: Unknown driver 'vmdk'"
        );
        assert!(parse("file=a,if=none", &cfg).unwrap_err().0.contains("-device"));
        assert_eq!(
            parse("file=a,bogus=1", &cfg).unwrap_err().0,
            "-drive file=a,bogus=1: Invalid parameter 'bogus'"
        );
        assert_eq!(legacy("x.img", 1).id, "ide0-hd1");
    }
}
