//! What godwit is made of, as `qom-list-types`, `device-list-properties`,
//! `qom-list-properties`, `query-machines`, `query-cpu-definitions` and
//! `query-command-line-options` report it: only the machine, devices, objects, CPU models
//! and options godwit really has, named as QEMU names them, so that libvirt's capability
//! probe sees what it can ask for (and does not ask for what godwit lacks).

use crate::cli::{CPU_MODELS, MAX_VCPUS};
use monitor::engine::{
    CommandLineOptionInfo, CommandLineParameterInfo, CpuDefinitionInfo, EngineError, MachineInfo, ObjectPropertyInfo, ObjectTypeInfo,
};

/// The one machine type, by its QEMU 7.2 name, and the alias it answers to.
pub const MACHINE: &str = "pc-i440fx-7.2";
pub const MACHINE_ALIAS: &str = "pc";
/// QEMU's default CPU model for its PC machines (godwit's models all expose what KVM has).
pub const DEFAULT_CPU: &str = "qemu64";

/// (type, parent, abstract) of every object type godwit has, CPU models aside.
const TYPES: &[(&str, Option<&str>, bool)] = &[
    ("object", None, true),
    ("container", Some("object"), false),
    ("machine", Some("object"), true),
    ("x86-machine", Some("machine"), true),
    ("generic-pc-machine", Some("x86-machine"), true),
    ("pc-i440fx-7.2-machine", Some("generic-pc-machine"), false),
    ("none-machine", Some("machine"), false),
    ("accel", Some("object"), true),
    ("kvm-accel", Some("accel"), false),
    ("device", Some("object"), true),
    ("cpu", Some("device"), true),
    ("x86_64-cpu", Some("cpu"), true),
    ("isa-device", Some("device"), true),
    ("isa-serial", Some("isa-device"), false),
    ("pci-device", Some("device"), true),
    ("virtio-pci", Some("pci-device"), true),
    ("virtio-net-pci", Some("virtio-pci"), false),
    ("memory-backend", Some("object"), true),
    ("memory-backend-ram", Some("memory-backend"), false),
    ("secret_common", Some("object"), true),
    ("secret", Some("secret_common"), false),
    ("chardev", Some("object"), true),
    ("chardev-socket", Some("chardev"), false),
    ("chardev-file", Some("chardev"), false),
];

pub fn cpu_type(model: &str) -> String {
    format!("{model}-x86_64-cpu")
}

pub fn types() -> Vec<ObjectTypeInfo> {
    let mut v: Vec<ObjectTypeInfo> = TYPES
        .iter()
        .map(|(name, parent, is_abstract)| ObjectTypeInfo {
            name: (*name).into(),
            is_abstract: *is_abstract,
            parent: parent.map(str::to_string),
        })
        .collect();
    v.extend(CPU_MODELS.iter().map(|m| ObjectTypeInfo {
        name: cpu_type(m),
        is_abstract: false,
        parent: Some("x86_64-cpu".into()),
    }));
    v
}

fn prop(name: &str, ty: &str, description: Option<&str>) -> ObjectPropertyInfo {
    ObjectPropertyInfo {
        description: description.map(str::to_string),
        ..ObjectPropertyInfo::new(name, ty)
    }
}

/// The properties `-device` takes for each device type godwit has.
pub fn device_properties(typename: &str) -> Result<Vec<ObjectPropertyInfo>, EngineError> {
    match typename {
        "isa-serial" => Ok(vec![
            prop("index", "uint32", None),
            prop("iobase", "uint32", None),
            prop("irq", "uint32", None),
            prop("chardev", "str", Some("ID of a chardev to use as a backend")),
        ]),
        "virtio-net-pci" => Ok(vec![
            prop("mac", "str", Some("Ethernet 6-byte MAC Address, example: 52:54:00:12:34:56")),
            prop("netdev", "str", Some("ID of a netdev to use as a backend")),
            prop("addr", "int32", Some("Slot and optional function number, example: 06.0 or 06")),
            prop("romfile", "str", None),
            prop("rombar", "uint32", None),
            prop("bootindex", "int32", None),
        ]),
        _ if is_type(typename) => Err(EngineError::generic("Parameter 'typename' expects a non-abstract device type")),
        _ => Err(EngineError::device_not_found(format!("Device '{typename}' not found"))),
    }
}

fn is_type(name: &str) -> bool {
    types().iter().any(|t| t.name == name)
}

/// The properties of any object type (machines, memory back ends, CPUs, ...).
pub fn object_properties(typename: &str) -> Result<Vec<ObjectPropertyInfo>, EngineError> {
    let common = vec![prop("type", "string", None)];
    let more = match typename {
        "none-machine" | "pc-i440fx-7.2-machine" => vec![
            prop("kernel", "string", Some("Linux kernel image file")),
            prop("initrd", "string", Some("Linux initial ramdisk file")),
            prop("append", "string", Some("Linux kernel command line")),
            prop("usb", "bool", Some("Set on/off to enable/disable usb")),
            prop("dump-guest-core", "bool", Some("Include guest memory in a core dump")),
            prop("mem-merge", "bool", Some("Enable/disable memory merge support")),
            prop("memory-backend", "link<memory-backend>", Some("Set RAM backend")),
        ],
        "memory-backend-ram" => vec![
            prop("size", "int", Some("Size of the memory region (ex: 500M)")),
            prop("merge", "bool", None),
            prop("dump", "bool", None),
            prop("x-use-canonical-path-for-ramblock-id", "bool", None),
        ],
        "secret" => vec![
            prop("data", "string", None),
            prop("file", "string", None),
            prop("format", "QCryptoSecretFormat", None),
        ],
        _ if is_type(typename) => device_properties(typename).unwrap_or_default(),
        // libvirt 9.0 asks for the properties of QEMU's file and memfd memory back ends
        // whether or not they exist, ends its probe on QEMU's error ("Class 'X' not
        // found") and crashes on a DeviceNotFound: godwit, which has neither, answers that
        // they have no properties (qom-list-types does not list them).
        "memory-backend-file" | "memory-backend-memfd" => return Ok(Vec::new()),
        _ => return Err(EngineError::generic(format!("Class '{typename}' not found"))),
    };
    Ok(common.into_iter().chain(more).collect())
}

pub fn machines() -> Vec<MachineInfo> {
    vec![
        MachineInfo {
            name: MACHINE.into(),
            alias: Some(MACHINE_ALIAS.into()),
            is_default: Some(true),
            cpu_max: MAX_VCPUS as i64,
            hotpluggable_cpus: false,
            numa_mem_supported: false,
            deprecated: false,
            default_cpu_type: Some(cpu_type(DEFAULT_CPU)),
            default_ram_id: Some("pc.ram".into()),
        },
        MachineInfo {
            name: "none".into(),
            alias: None,
            is_default: None,
            cpu_max: 1,
            hotpluggable_cpus: false,
            numa_mem_supported: false,
            deprecated: false,
            default_cpu_type: None,
            default_ram_id: Some("ram".into()),
        },
    ]
}

/// Every model shows the guest what KVM supports on this host, so none lacks a feature;
/// only `host` and `max` depend on the host by name.
pub fn cpu_definitions() -> Vec<CpuDefinitionInfo> {
    CPU_MODELS
        .iter()
        .map(|m| CpuDefinitionInfo {
            name: (*m).into(),
            migration_safe: !matches!(*m, "host" | "max"),
            is_static: false,
            unavailable_features: Vec::new(),
            typename: cpu_type(m),
            deprecated: false,
        })
        .collect()
}

/// (option, [(parameter, type)]) for the options godwit takes in `key=value` form.
const OPTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "machine",
        &[
            ("type", "string"),
            ("accel", "string"),
            ("usb", "boolean"),
            ("dump-guest-core", "boolean"),
            ("mem-merge", "boolean"),
            ("memory-backend", "string"),
        ],
    ),
    ("name", &[("guest", "string"), ("process", "string"), ("debug-threads", "boolean")]),
    ("msg", &[("timestamp", "boolean"), ("guest-name", "boolean")]),
    ("overcommit", &[("mem-lock", "boolean"), ("cpu-pm", "boolean")]),
    ("add-fd", &[("fd", "number"), ("set", "number"), ("opaque", "string")]),
    (
        "boot-opts",
        &[
            ("order", "string"),
            ("once", "string"),
            ("menu", "boolean"),
            ("splash", "string"),
            ("splash-time", "number"),
            ("reboot-timeout", "number"),
            ("strict", "boolean"),
        ],
    ),
    (
        "smp-opts",
        &[
            ("cpus", "number"),
            ("sockets", "number"),
            ("dies", "number"),
            ("clusters", "number"),
            ("cores", "number"),
            ("threads", "number"),
            ("maxcpus", "number"),
        ],
    ),
    ("memory", &[("size", "size")]),
    ("rtc", &[("base", "string"), ("clock", "string"), ("driftfix", "string")]),
    ("mon", &[("chardev", "string"), ("mode", "string"), ("pretty", "boolean")]),
    (
        "chardev",
        &[
            ("path", "string"),
            ("host", "string"),
            ("port", "string"),
            ("fd", "string"),
            ("server", "boolean"),
            ("wait", "boolean"),
            ("telnet", "boolean"),
            ("nodelay", "boolean"),
            ("append", "boolean"),
        ],
    ),
    (
        "drive",
        &[
            ("file", "string"),
            ("format", "string"),
            ("if", "string"),
            ("readonly", "boolean"),
            ("snapshot", "boolean"),
            ("cache", "string"),
            ("id", "string"),
        ],
    ),
    ("accel", &[]),
    ("object", &[]),
    ("device", &[]),
    ("netdev", &[]),
    ("net", &[]),
    ("nic", &[]),
];

pub fn command_line_options(option: Option<&str>) -> Result<Vec<CommandLineOptionInfo>, EngineError> {
    let list: Vec<CommandLineOptionInfo> = OPTIONS
        .iter()
        .filter(|(name, _)| option.is_none_or(|o| o == *name))
        .map(|(name, params)| CommandLineOptionInfo {
            option: (*name).into(),
            parameters: params
                .iter()
                .map(|(p, t)| CommandLineParameterInfo {
                    name: (*p).into(),
                    ty: (*t).into(),
                })
                .collect(),
        })
        .collect();
    match option {
        Some(o) if list.is_empty() => Err(EngineError::generic(format!("invalid option name: {o}"))),
        _ => Ok(list),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_exist_and_names_are_unique() {
        let t = types();
        for ty in &t {
            if let Some(p) = &ty.parent {
                assert!(t.iter().any(|x| &x.name == p), "{} has unknown parent {p}", ty.name);
            }
        }
        let mut names: Vec<_> = t.iter().map(|x| x.name.clone()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), t.len());
    }

    #[test]
    fn devices_and_errors() {
        assert!(device_properties("isa-serial").unwrap().iter().any(|p| p.name == "chardev"));
        let e = device_properties("virtio-blk-ccw").unwrap_err();
        assert_eq!(e.desc, "Device 'virtio-blk-ccw' not found");
        assert_eq!(e.class, monitor::engine::ErrorClass::DeviceNotFound);
        assert!(device_properties("memory-backend-ram").is_err());
        assert!(
            object_properties("pc-i440fx-7.2-machine")
                .unwrap()
                .iter()
                .any(|p| p.name == "memory-backend")
        );
        assert_eq!(object_properties("bogus").unwrap_err().desc, "Class 'bogus' not found");
        assert_eq!(command_line_options(Some("bogus")).unwrap_err().desc, "invalid option name: bogus");
        assert_eq!(command_line_options(Some("rtc")).unwrap().len(), 1);
        let m = machines();
        assert_eq!(m[0].alias.as_deref(), Some("pc"));
        assert!(
            cpu_definitions()
                .iter()
                .any(|c| c.name == "qemu64" && c.typename == "qemu64-x86_64-cpu")
        );
    }
}
