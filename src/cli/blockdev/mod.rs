//! `-blockdev` and `-device virtio-blk-pci,drive=NODE`, as libvirt writes a disk:
//!
//! ```text
//! -blockdev {"driver":"file","filename":"/x.qcow2","node-name":"libvirt-1-storage",...}
//! -blockdev {"node-name":"libvirt-1-format","driver":"qcow2","file":"libvirt-1-storage","backing":null}
//! -device {"driver":"virtio-blk-pci","drive":"libvirt-1-format","id":"virtio-disk0",...}
//! ```
//!
//! Nodes are kept as given; the device turns a format node over a protocol node (or a
//! protocol node alone, read as raw) into one of godwit's disks, the `DriveConfig` that
//! `-drive` makes, so both open, migrate and snapshot their images the same way. Protocol
//! drivers: `file`, `host_device`; formats: `raw`, `qcow2`. Anything godwit cannot honour
//! (other drivers, `cache.direct`, `locking=off`, `detect-zeroes`) is refused in one line.

use super::CliError;
use crate::config::{BlockdevDisk, Config, DriveConfig};
use serde_json::{Map, Value};

/// One `-blockdev` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    /// The option's value as given, for messages.
    pub spec: String,
    pub kind: NodeKind,
    pub read_only: bool,
    /// `auto-read-only`: the node follows its user's need (a protocol node under a
    /// writable format node may be opened read-write).
    pub auto_read_only: bool,
    /// `cache.no-flush`: the guest's flushes are ignored (QEMU's `cache=unsafe`).
    pub no_flush: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeKind {
    /// `file` or `host_device`.
    Protocol { driver: String, filename: String },
    /// `raw` or `qcow2` over the protocol node `file`; `backing` None = from the image's
    /// header, Some(None) = `null` (no backing file), Some(Some(NODE)).
    Format {
        driver: String,
        file: String,
        backing: Option<Option<String>>,
    },
}

/// The members as a JSON object, whichever spelling was used (`a=b,c.d=e` becomes
/// `{"a":"b","c.d":"e"}`; a nested `cache` object is flattened the same way).
fn members(value: &str) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    if value.trim_start().starts_with('{') {
        let obj: Map<String, Value> = serde_json::from_str(value).map_err(|e| format!("JSON parse error, {e}"))?;
        for (k, v) in obj {
            match v {
                Value::Object(inner) if k == "cache" => {
                    for (ik, iv) in inner {
                        out.insert(format!("cache.{ik}"), iv);
                    }
                }
                Value::Object(_) | Value::Array(_) => {
                    return Err(format!("Parameter '{k}': godwit takes a node name or a plain value here"));
                }
                v => {
                    out.insert(k, v);
                }
            }
        }
        return Ok(out);
    }
    for part in super::drive::split_options(value) {
        let (k, v) = part.split_once('=').ok_or_else(|| format!("Invalid parameter '{part}'"))?;
        out.insert(k.to_string(), Value::String(v.to_string()));
    }
    Ok(out)
}

fn text(m: &Map<String, Value>, key: &str) -> Result<Option<String>, String> {
    match m.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(format!("Invalid parameter type for '{key}', expected: string")),
    }
}

fn flag(m: &Map<String, Value>, key: &str) -> Result<bool, String> {
    match m.get(key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(Value::String(s)) => match s.as_str() {
            "on" | "true" | "yes" => Ok(true),
            "off" | "false" | "no" => Ok(false),
            _ => Err(format!("Parameter '{key}' expects 'on' or 'off'")),
        },
        Some(_) => Err(format!("Invalid parameter type for '{key}', expected: boolean")),
    }
}

/// Checks the members every driver shares; the driver-specific ones are left to the caller.
fn common(m: &Map<String, Value>) -> Result<(), String> {
    if let Some(d) = text(m, "discard")? {
        if !matches!(d.as_str(), "ignore" | "off" | "unmap" | "on") {
            return Err(format!("Parameter 'discard' does not accept value '{d}'"));
        }
    }
    if flag(m, "cache.direct")? {
        return Err("godwit does not open images with O_DIRECT (cache.direct=on); use the host's page cache".into());
    }
    if text(m, "detect-zeroes")?.is_some_and(|d| d != "off") {
        return Err("godwit does not detect zero writes (only detect-zeroes=off)".into());
    }
    if flag(m, "force-share")? {
        return Err("godwit always takes its image locks (force-share=on is not supported)".into());
    }
    Ok(())
}

const COMMON: &[&str] = &[
    "driver",
    "node-name",
    "read-only",
    "auto-read-only",
    "discard",
    "cache.direct",
    "cache.no-flush",
    "detect-zeroes",
    "force-share",
];

fn kind(m: &Map<String, Value>, driver: &str) -> Result<NodeKind, String> {
    let extra: &[&str] = match driver {
        "file" | "host_device" => &["filename", "aio", "locking"],
        "qcow2" => &["file", "backing"],
        "raw" => &["file"],
        "nbd" | "vmdk" | "vdi" | "vhdx" | "vpc" | "luks" | "iscsi" | "rbd" | "gluster" | "nfs" | "ssh" | "http" | "https" | "null-co"
        | "throttle" | "copy-on-read" | "blkdebug" | "quorum" | "host_cdrom" | "qed" => {
            return Err(format!(
                "godwit has no '{driver}' block driver (it has file, host_device, raw and qcow2)"
            ));
        }
        _ => return Err(format!("Parameter 'driver' does not accept value '{driver}'")),
    };
    if let Some(k) = m.keys().find(|k| !COMMON.contains(&k.as_str()) && !extra.contains(&k.as_str())) {
        return Err(format!("Parameter '{k}' is unexpected"));
    }
    if let Some(l) = text(m, "locking")? {
        if l == "off" {
            return Err("godwit always takes its image locks (locking=off is not supported)".into());
        }
        if l != "on" && l != "auto" {
            return Err(format!("Parameter 'locking' does not accept value '{l}'"));
        }
    }
    if let Some(a) = text(m, "aio")? {
        // How requests reach the kernel; godwit's I/O threads give the same results.
        if !matches!(a.as_str(), "threads" | "native" | "io_uring") {
            return Err(format!("Parameter 'aio' does not accept value '{a}'"));
        }
    }
    if driver == "file" || driver == "host_device" {
        let filename = text(m, "filename")?.ok_or("Parameter 'filename' is missing")?;
        return Ok(NodeKind::Protocol {
            driver: driver.to_string(),
            filename,
        });
    }
    let file = text(m, "file")?.ok_or("Parameter 'file' is missing")?;
    let backing = match m.get("backing") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.is_empty() => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => return Err("Invalid parameter type for 'backing', expected: string or null".into()),
    };
    Ok(NodeKind::Format {
        driver: driver.to_string(),
        file,
        backing,
    })
}

/// `-blockdev VALUE`: checks the node and its references and adds it.
pub fn blockdev(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let fail = |m: String| CliError(format!("-blockdev {value}: {m}"));
    let m = members(value).map_err(fail)?;
    let driver = text(&m, "driver")
        .map_err(fail)?
        .ok_or_else(|| fail("Parameter 'driver' is missing".into()))?;
    let kind = kind(&m, &driver).map_err(fail)?;
    common(&m).map_err(fail)?;
    let name = text(&m, "node-name")
        .map_err(fail)?
        .ok_or_else(|| fail("'node-name' must be specified for the root node".into()))?;
    if cfg.blockdevs.iter().any(|n| n.name == name) {
        return Err(fail(format!("Duplicate nodes with node-name='{name}'")));
    }
    let read_only = flag(&m, "read-only").map_err(fail)?;
    if let NodeKind::Format { file, backing, .. } = &kind {
        let below = find(cfg, file).ok_or_else(|| fail(format!("Cannot find device='{file}' nor node-name='{file}'")))?;
        if !matches!(below.kind, NodeKind::Protocol { .. }) {
            return Err(fail(format!(
                "node '{file}' is a format node; godwit puts a format node over a file node only"
            )));
        }
        if below.read_only && !below.auto_read_only && !read_only {
            return Err(fail("Block node is read-only".into()));
        }
        if let Some(user) = users(cfg, file).next() {
            return Err(fail(format!("node '{file}' is already used by node '{user}'")));
        }
        if let Some(Some(b)) = backing {
            match find(cfg, b) {
                Some(Node {
                    kind: NodeKind::Format { .. },
                    ..
                }) => {}
                Some(_) => return Err(fail(format!("backing node '{b}' is not a format node"))),
                None => return Err(fail(format!("Cannot find device='{b}' nor node-name='{b}'"))),
            }
        }
    }
    cfg.blockdevs.push(Node {
        name,
        spec: value.to_string(),
        kind,
        read_only,
        auto_read_only: flag(&m, "auto-read-only").map_err(fail)?,
        no_flush: flag(&m, "cache.no-flush").map_err(fail)?,
    });
    Ok(())
}

fn find<'a>(cfg: &'a Config, name: &str) -> Option<&'a Node> {
    cfg.blockdevs.iter().find(|n| n.name == name)
}

/// The nodes that have `name` as their file.
fn users<'a>(cfg: &'a Config, name: &'a str) -> impl Iterator<Item = &'a str> {
    cfg.blockdevs.iter().filter_map(move |n| match &n.kind {
        NodeKind::Format { file, .. } if file == name => Some(n.name.as_str()),
        _ => None,
    })
}

/// The disk `-device virtio-blk-pci,drive=NODE` makes of the node `drive`.
pub fn disk(drive: &str, qdev_id: Option<String>, serial: String, cfg: &Config) -> Result<DriveConfig, String> {
    let top = find(cfg, drive).ok_or_else(|| format!("Property 'virtio-blk-device.drive' can't find value '{drive}'"))?;
    if let Some(d) = cfg.drives.iter().find(|d| d.id == drive) {
        return Err(format!("node '{drive}' is already the disk of device '{}'", qdev_of(d)));
    }
    if let Some(user) = users(cfg, drive).next() {
        return Err(format!("node '{drive}' is already used by node '{user}'"));
    }
    let (format, storage, backing) = match &top.kind {
        NodeKind::Protocol { .. } => ("raw".to_string(), top, None),
        NodeKind::Format { driver, file, backing, .. } => {
            let s = find(cfg, file).ok_or_else(|| format!("Cannot find device='{file}' nor node-name='{file}'"))?;
            (driver.clone(), s, backing.clone())
        }
    };
    let NodeKind::Protocol { driver, filename } = &storage.kind else {
        return Err(format!("node '{}' is not a file node", storage.name));
    };
    let (chain, ends) = backing_chain(cfg, backing)?;
    Ok(DriveConfig {
        file: filename.into(),
        format: Some(format),
        read_only: top.read_only,
        snapshot: false,
        ignore_flush: top.no_flush,
        id: top.name.clone(),
        spec: top.spec.clone(),
        blockdev: Some(BlockdevDisk {
            storage_node: storage.name.clone(),
            storage_driver: driver.clone(),
            storage_spec: storage.spec.clone(),
            qdev_id,
            serial,
            backing: chain,
            backing_ends: ends,
        }),
    })
}

fn qdev_of(d: &DriveConfig) -> String {
    d.blockdev.as_ref().and_then(|b| b.qdev_id.clone()).unwrap_or_else(|| d.id.clone())
}

/// The files a `backing` member names, following each backing node's own `backing`.
fn backing_chain(cfg: &Config, mut next: Option<Option<String>>) -> Result<(Vec<std::path::PathBuf>, bool), String> {
    let mut chain = Vec::new();
    loop {
        match next {
            None => return Ok((chain, false)),
            Some(None) => return Ok((chain, true)),
            Some(Some(name)) => {
                let node = find(cfg, &name).ok_or_else(|| format!("Cannot find device='{name}' nor node-name='{name}'"))?;
                let NodeKind::Format { file, backing, .. } = &node.kind else {
                    return Err(format!("backing node '{name}' is not a format node"));
                };
                let Some(Node {
                    kind: NodeKind::Protocol { filename, .. },
                    ..
                }) = find(cfg, file)
                else {
                    return Err(format!("node '{file}' is not a file node"));
                };
                if chain.len() > 64 {
                    return Err("Backing chain too deep".into());
                }
                chain.push(filename.into());
                next = backing.clone();
            }
        }
    }
}

#[cfg(test)]
mod tests;
