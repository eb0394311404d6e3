//! The handlers of the command table: arguments (already checked against the command's
//! type) to one engine request, the engine's typed answer to QMP's JSON.

use super::commands::{COMMANDS, Ctx};
use super::schema::{Ty, UintKind};
use super::types::MIGRATE_SET_PARAMETERS;
use crate::engine::{EngineError, ErrorClass, JobType, MigrateArgs, MigrateSetParameters, MigrationCapabilityStatus, SnapshotJob};
use crate::output::push_crlf;
use crate::vmm::execute_line;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

type Answer = Result<Value, EngineError>;

fn to_value(v: impl Serialize) -> Answer {
    serde_json::to_value(v).map_err(|e| EngineError::generic(format!("cannot encode the answer: {e}")))
}

fn from_args<T: DeserializeOwned>(args: &Map<String, Value>) -> Result<T, EngineError> {
    serde_json::from_value(Value::Object(args.clone())).map_err(|e| EngineError::generic(e.to_string()))
}

fn empty() -> Answer {
    Ok(json!({}))
}

fn done(r: Result<(), EngineError>) -> Answer {
    r.and_then(|()| empty())
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> &'a str {
    args.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn bool_arg(args: &Map<String, Value>, name: &str) -> bool {
    args.get(name).and_then(Value::as_bool).unwrap_or(false)
}

pub fn capabilities_again(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Err(EngineError {
        class: ErrorClass::CommandNotFound,
        desc: "Capabilities negotiation is already complete, command ignored".into(),
    })
}

pub fn query_version(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_version())
}

pub fn query_commands(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Ok(Value::Array(COMMANDS.iter().map(|c| json!({"name": c.name})).collect()))
}

pub fn query_qmp_schema(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Ok(super::introspect::schema())
}

pub fn query_status(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_status())
}

pub fn query_name(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_name())
}

pub fn query_uuid(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_uuid())
}

pub fn query_kvm(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_kvm())
}

pub fn query_target(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_target())
}

pub fn query_cpus_fast(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_cpus_fast()?)
}

pub fn query_block(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_block()?)
}

pub fn query_chardev(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_chardev())
}

/// QEMU answers one entry per PCI bus; godwit has bus 0.
pub fn query_pci(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Ok(json!([{"bus": 0, "devices": to_value(c.engine.query_pci()?)?}]))
}

pub fn stop(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    done(c.engine.stop())
}

pub fn cont(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    done(c.engine.cont())
}

pub fn system_reset(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    done(c.engine.system_reset())
}

pub fn system_powerdown(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    done(c.engine.system_powerdown())
}

pub fn quit(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    c.engine.quit();
    empty()
}

/// The line runs as HMP runs it; its output comes back with `\r\n` line ends, as QEMU
/// returns it. A synchronous `migrate` returns at once (nothing waits on it here).
pub fn human_monitor_command(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let mut out = Vec::new();
    execute_line(str_arg(args, "command-line"), c.hmp, &mut out).map_err(|e| EngineError::generic(e.to_string()))?;
    let mut wire = Vec::with_capacity(out.len());
    push_crlf(&mut wire, &out);
    Ok(Value::String(String::from_utf8_lossy(&wire).into_owned()))
}

/// The first descriptor that came with the command is kept; any others are closed.
pub fn set_link(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    done(c.engine.set_link(str_arg(args, "name"), bool_arg(args, "up")))
}

/// `announce-self`: the given timing, for the named NICs (all when none is named).
pub fn announce_self(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let ms = |name: &str| args.get(name).and_then(Value::as_u64).unwrap_or(0);
    let schedule = crate::engine::AnnounceSchedule {
        initial: ms("initial"),
        max: ms("max"),
        rounds: ms("rounds"),
        step: ms("step"),
    };
    let names: Vec<String> = args
        .get("interfaces")
        .and_then(Value::as_array)
        .map(|l| l.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    done(c.engine.announce_self(&names, Some(schedule)))
}

pub fn getfd(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    if c.received.is_empty() {
        return Err(EngineError::generic("No file descriptor supplied via SCM_RIGHTS"));
    }
    let fd = c.received.remove(0);
    c.received.clear();
    done(c.fds.add(str_arg(args, "fdname"), fd))
}

pub fn closefd(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    done(c.fds.close(str_arg(args, "fdname")))
}

pub fn migrate(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let a = MigrateArgs {
        uri: str_arg(args, "uri").to_string(),
        blk: bool_arg(args, "blk"),
        inc: bool_arg(args, "inc"),
        detach: bool_arg(args, "detach"),
        resume: bool_arg(args, "resume"),
    };
    done(c.engine.migrate(&a, c.fds))
}

pub fn migrate_cancel(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    c.engine.migrate_cancel();
    empty()
}

pub fn migrate_start_postcopy(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    done(c.engine.migrate_start_postcopy())
}

pub fn migrate_recover(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    done(c.engine.migrate_recover(str_arg(args, "uri")))
}

pub fn migrate_incoming(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    done(c.engine.migrate_incoming(str_arg(args, "uri"), c.fds))
}

pub fn migrate_set_capabilities(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let caps: Vec<MigrationCapabilityStatus> =
        serde_json::from_value(args["capabilities"].clone()).map_err(|e| EngineError::generic(e.to_string()))?;
    done(c.engine.migrate_set_capabilities(&caps))
}

pub fn query_migrate_capabilities(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_migrate_capabilities())
}

/// Null TLS strings mean "none" (the empty string); negative sizes wrap to unsigned, as
/// QEMU takes them. The engine checks the values (and passes a parameter godwit does not
/// act on when it keeps its current value, as libvirt sends every one back).
pub fn migrate_set_parameters(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let mut args = args.clone();
    for m in MIGRATE_SET_PARAMETERS.members {
        let Some(v) = args.get_mut(m.name) else { continue };
        match m.ty {
            Ty::StrOrNull if v.is_null() => *v = Value::from(""),
            Ty::Uint(UintKind::U64 | UintKind::Size) => {
                if let Some(i) = v.as_i64().filter(|i| *i < 0) {
                    *v = Value::from(i as u64);
                }
            }
            _ => {}
        }
    }
    if args.contains_key("block-bitmap-mapping") {
        return Err(EngineError::generic("godwit does not migrate dirty bitmaps (block-bitmap-mapping)"));
    }
    let p: MigrateSetParameters = from_args(&args)?;
    done(c.engine.migrate_set_parameters(&p))
}

pub fn query_migrate_parameters(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_migrate_parameters())
}

/// `tcp:HOST:PORT` and `unix:PATH` as QMP's `SocketAddress` objects.
pub fn socket_address(text: &str) -> Value {
    if let Some(path) = text.strip_prefix("unix:") {
        return json!({"type": "unix", "path": path});
    }
    let rest = text.strip_prefix("tcp:").unwrap_or(text);
    let (host, port) = rest.rsplit_once(':').unwrap_or((rest, ""));
    let mut v = json!({"type": "inet", "host": host, "port": port});
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => v["ipv4"] = Value::Bool(true),
        Ok(std::net::IpAddr::V6(_)) => v["ipv6"] = Value::Bool(true),
        Err(_) => {}
    }
    v
}

pub fn query_migrate(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    let info = c.engine.query_migrate();
    let mut v = to_value(&info)?;
    if !info.socket_address.is_empty() {
        v["socket-address"] = Value::Array(info.socket_address.iter().map(|a| socket_address(a)).collect());
    }
    Ok(v)
}

fn snapshot(c: &mut Ctx<'_>, args: &Map<String, Value>, kind: JobType) -> Answer {
    let job: SnapshotJob = from_args(args)?;
    done(c.engine.snapshot_job(kind, &job))
}

pub fn snapshot_save(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    snapshot(c, args, JobType::SnapshotSave)
}

pub fn snapshot_load(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    snapshot(c, args, JobType::SnapshotLoad)
}

pub fn snapshot_delete(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    snapshot(c, args, JobType::SnapshotDelete)
}

pub fn query_jobs(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_jobs())
}

pub fn job_dismiss(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    done(c.engine.job_dismiss(str_arg(args, "id")))
}
