//! The QOM tree of the running machine as far as `qom-list` and `qom-get` show it: the
//! machine, its CPUs under `/machine/unattached/device[N]`, devices with an `id` under
//! `/machine/peripheral`, and `-object` instances under `/objects` (what libvirt reads
//! after it starts a guest).

use super::catalog::cpu_type;
use crate::config::Config;
use monitor::engine::{EngineError, ObjectPropertyInfo};
use serde_json::{Value, json};

/// What the tree is built from, taken from the configuration at start-up.
#[derive(Debug, Clone, Default)]
pub struct QomLayout {
    /// `pc-i440fx-7.2-machine` or `none-machine`.
    pub machine_type: String,
    pub cpu_type: String,
    pub vcpus: usize,
    /// (id, type) of devices given an `id` (`/machine/peripheral/ID`).
    pub peripherals: Vec<(String, String)>,
    /// (id, type) of `-object` instances.
    pub objects: Vec<(String, String)>,
}

impl QomLayout {
    pub fn of(cfg: &Config) -> QomLayout {
        let none = cfg.machine == "none";
        let mut peripherals = Vec::new();
        if let (Some(_), Some(id)) = (&cfg.isa_serial, &cfg.serial_device_id) {
            peripherals.push((id.clone(), "isa-serial".to_string()));
        }
        peripherals.extend(
            cfg.nics
                .iter()
                .filter(|n| !n.qdev_id.is_empty())
                .map(|n| (n.qdev_id.clone(), "virtio-net-pci".to_string())),
        );
        peripherals.extend(
            cfg.drives
                .iter()
                .filter_map(|d| d.blockdev.as_ref()?.qdev_id.clone())
                .map(|id| (id, "virtio-blk-pci".to_string())),
        );
        QomLayout {
            machine_type: if none { "none-machine" } else { "pc-i440fx-7.2-machine" }.into(),
            cpu_type: cpu_type(&cfg.cpu_model),
            vcpus: if none { 0 } else { usize::from(cfg.vcpus) },
            peripherals,
            objects: cfg.objects.iter().map(|o| (o.id.clone(), o.qom_type().to_string())).collect(),
        }
    }

    fn not_found(path: &str) -> EngineError {
        EngineError::device_not_found(format!("Device '{path}' not found"))
    }

    /// The type of the object at `path`.
    fn type_at(&self, path: &str) -> Option<String> {
        let path = path.trim_end_matches('/');
        match path {
            "" | "/objects" | "/machine/unattached" | "/machine/peripheral" | "/machine/peripheral-anon" => Some("container".into()),
            "/machine" => Some(self.machine_type.clone()),
            _ => {
                if let Some(n) = path.strip_prefix("/machine/unattached/device[").and_then(|r| r.strip_suffix(']')) {
                    return n.parse::<usize>().ok().filter(|i| *i < self.vcpus).map(|_| self.cpu_type.clone());
                }
                let find = |list: &[(String, String)], id: &str| list.iter().find(|(i, _)| i == id).map(|(_, t)| t.clone());
                if let Some(id) = path.strip_prefix("/machine/peripheral/") {
                    return find(&self.peripherals, id);
                }
                path.strip_prefix("/objects/").and_then(|id| find(&self.objects, id))
            }
        }
    }

    /// `qom-list PATH`.
    pub fn list(&self, path: &str) -> Result<Vec<ObjectPropertyInfo>, EngineError> {
        let ty = self.type_at(path).ok_or_else(|| Self::not_found(path))?;
        let p = ObjectPropertyInfo::new;
        let child = |name: &str, t: &str| p(name, &format!("child<{t}>"));
        let mut v = vec![p("type", "string")];
        match path.trim_end_matches('/') {
            "" => v.extend([child("machine", &self.machine_type), child("objects", "container")]),
            "/machine" => v.extend([
                child("unattached", "container"),
                child("peripheral", "container"),
                child("peripheral-anon", "container"),
            ]),
            "/machine/unattached" => v.extend((0..self.vcpus).map(|i| child(&format!("device[{i}]"), &self.cpu_type))),
            "/machine/peripheral" => v.extend(self.peripherals.iter().map(|(id, t)| child(id, t))),
            "/objects" => v.extend(self.objects.iter().map(|(id, t)| child(id, t))),
            _ if ty.ends_with("-cpu") => {
                v.extend(["realized", "hotplugged", "hotpluggable"].map(|n| p(n, "bool")));
            }
            _ => {}
        }
        Ok(v)
    }

    /// `qom-get PATH PROPERTY`.
    pub fn get(&self, path: &str, property: &str) -> Result<Value, EngineError> {
        let ty = self.type_at(path).ok_or_else(|| Self::not_found(path))?;
        match property {
            "type" => Ok(json!(ty)),
            "realized" if ty.ends_with("-cpu") => Ok(json!(true)),
            "hotplugged" | "hotpluggable" if ty.ends_with("-cpu") => Ok(json!(false)),
            _ => Err(EngineError::generic(format!("Property '{ty}.{property}' not found"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> QomLayout {
        QomLayout {
            machine_type: "pc-i440fx-7.2-machine".into(),
            cpu_type: "qemu64-x86_64-cpu".into(),
            vcpus: 2,
            peripherals: vec![("serial0".into(), "isa-serial".into())],
            objects: vec![("pc.ram".into(), "memory-backend-ram".into())],
        }
    }

    #[test]
    fn tree() {
        let l = layout();
        let names = |p: &str| l.list(p).unwrap().into_iter().map(|i| i.name).collect::<Vec<_>>();
        assert_eq!(names("/machine/unattached"), ["type", "device[0]", "device[1]"]);
        assert_eq!(names("/machine/peripheral"), ["type", "serial0"]);
        assert!(names("/machine/unattached/device[1]").contains(&"realized".to_string()));
        assert_eq!(l.get("/machine/unattached/device[0]", "type").unwrap(), json!("qemu64-x86_64-cpu"));
        assert_eq!(l.get("/objects/pc.ram", "type").unwrap(), json!("memory-backend-ram"));
        assert_eq!(
            l.list("/machine/unattached/device[2]").unwrap_err().desc,
            "Device '/machine/unattached/device[2]' not found"
        );
        assert_eq!(
            l.get("/machine/unattached/device[0]", "feature-words").unwrap_err().desc,
            "Property 'qemu64-x86_64-cpu.feature-words' not found"
        );
    }
}
