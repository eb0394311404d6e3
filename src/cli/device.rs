//! `-device DRIVER,...` (or its JSON form): the devices godwit has, each to its own
//! option group (`isa-serial` to `serial.rs`, `virtio-net-pci` to `net.rs`).

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
        _ => super::net::device(&text, cfg),
    }
}
