//! Handlers of the commands that describe the machine (`qom-list-types`,
//! `device-list-properties`, `query-machines`, `query-cpu-definitions`,
//! `query-command-line-options`, `qom-list`, `qom-get`, ...) and of `set-action`: each
//! one engine request (see `crate::engine::catalog`).

use super::commands::Ctx;
use crate::engine::{Actions, EngineError, ErrorClass};
use serde::Serialize;
use serde_json::{Map, Value, json};

type Answer = Result<Value, EngineError>;

fn to_value(v: impl Serialize) -> Answer {
    serde_json::to_value(v).map_err(|e| EngineError::generic(format!("cannot encode the answer: {e}")))
}

fn str_arg<'a>(args: &'a Map<String, Value>, name: &str) -> &'a str {
    args.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// `implements` keeps the types derived from that one; abstract types only on request.
pub fn qom_list_types(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let all = c.engine.qom_list_types();
    let want_abstract = args.get("abstract").and_then(Value::as_bool).unwrap_or(false);
    let implements = args.get("implements").and_then(Value::as_str);
    let derives = |name: &str, base: &str| {
        let mut cur = Some(name.to_string());
        while let Some(n) = cur {
            if n == base {
                return true;
            }
            cur = all.iter().find(|t| t.name == n).and_then(|t| t.parent.clone());
        }
        false
    };
    let list: Vec<_> = all
        .iter()
        .filter(|t| want_abstract || !t.is_abstract)
        .filter(|t| implements.is_none_or(|base| derives(&t.name, base)))
        .collect();
    to_value(list)
}

pub fn device_list_properties(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    to_value(c.engine.device_list_properties(str_arg(args, "typename"))?)
}

pub fn qom_list_properties(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    to_value(c.engine.qom_list_properties(str_arg(args, "typename"))?)
}

pub fn qom_list(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    to_value(c.engine.qom_list(str_arg(args, "path"))?)
}

pub fn qom_get(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    c.engine.qom_get(str_arg(args, "path"), str_arg(args, "property"))
}

pub fn query_machines(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_machines())
}

pub fn query_cpu_definitions(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_cpu_definitions())
}

pub fn query_command_line_options(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_command_line_options(args.get("option").and_then(Value::as_str))?)
}

/// Every node the engine has (a `-drive` disk is one node, a `-blockdev` disk its format
/// and protocol nodes), with or without `flat` alike.
pub fn query_named_block_nodes(c: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    to_value(c.engine.query_named_block_nodes()?)
}

/// Each disk's counters, or (`query-nodes`) each node's.
pub fn query_blockstats(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let nodes = args.get("query-nodes").and_then(Value::as_bool).unwrap_or(false);
    to_value(c.engine.query_blockstats(nodes)?)
}

/// godwit has no TPM: no models, no back ends.
pub fn query_tpm_models(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Ok(json!([]))
}

pub fn query_tpm_types(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Ok(json!([]))
}

/// godwit has no `iothread` objects (its I/O threads are its own, not the user's).
pub fn query_iothreads(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Ok(json!([]))
}

/// godwit has no balloon device: QEMU's answer without one.
pub fn query_balloon(_: &mut Ctx<'_>, _: &Map<String, Value>) -> Answer {
    Err(EngineError {
        class: ErrorClass::DeviceNotActive,
        desc: "No balloon device has been activated".into(),
    })
}

pub fn set_action(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Answer {
    let a: Actions = serde_json::from_value(Value::Object(args.clone())).map_err(|e| EngineError::generic(e.to_string()))?;
    c.engine.set_action(&a).map(|()| json!({}))
}
