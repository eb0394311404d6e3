//! `-device DRIVER,...` (or its JSON form): the devices godwit has, each to its own
//! option group (`isa-serial` to `serial.rs`, `virtio-net-pci` to `net.rs`,
//! `virtio-blk-pci` to `blockdev.rs`).

use super::CliError;
use super::drive::split_options;
use crate::config::Config;

/// `-device`.
pub fn device(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let text = super::json::keyval("device", value, "driver")?;
    let parts = split_options(&text);
    let driver = parts.first().map(|p| p.strip_prefix("driver=").unwrap_or(p)).unwrap_or("");
    match driver {
        "isa-serial" => {
            let opts: Vec<(String, String)> = parts[1..]
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .unwrap_or((p.clone(), "on".into()))
                })
                .collect();
            super::serial::isa_serial(&text, &opts, cfg)
        }
        "virtio-blk-pci" | "virtio-blk" => blk(&text, &parts[1..], cfg),
        _ => super::net::device(&text, cfg),
    }
}

/// `-device virtio-blk-pci,drive=NODE[,id=ID][,serial=S]`: a disk on `-blockdev` nodes.
fn blk(text: &str, opts: &[String], cfg: &mut Config) -> Result<(), CliError> {
    let fail = |m: String| CliError(format!("-device {text}: {m}"));
    let (mut drive, mut id, mut serial) = (None, None, String::new());
    for p in opts {
        let (k, v) = p.split_once('=').unwrap_or((p.as_str(), "on"));
        match k {
            "drive" => drive = Some(v.to_string()),
            "id" => id = Some(v.to_string()),
            "serial" => serial = v.to_string(),
            // Placement and firmware: godwit places functions itself and boots no ROM.
            "bus" | "addr" | "bootindex" => {}
            _ => return Err(fail(format!("Property 'virtio-blk-pci.{k}' not found"))),
        }
    }
    let drive = drive.ok_or_else(|| fail("drive property not set".into()))?;
    let d = super::blockdev::disk(&drive, id, serial, cfg).map_err(fail)?;
    cfg.drives.push(d);
    Ok(())
}
