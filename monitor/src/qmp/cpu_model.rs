//! `query-cpu-model-expansion`: a CPU model's feature properties, as the engine reports
//! what a guest of that model sees, with the caller's `props` applied on top as QEMU
//! applies them. A static expansion names the model `base` (every feature spelt out), a
//! full one keeps the model's name.

use super::commands::Ctx;
use crate::engine::{CpuFeature, EngineError};
use serde_json::{Map, Value, json};

/// The property every x86 CPU model takes besides its features.
const MIGRATABLE: &str = "migratable";

pub fn query_cpu_model_expansion(c: &mut Ctx<'_>, args: &Map<String, Value>) -> Result<Value, EngineError> {
    let model = args.get("model").and_then(Value::as_object);
    let name = model.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or_default();
    let mut features = c.engine.cpu_model_features(name)?;
    // QEMU ignores `props` that are not an object.
    if let Some(props) = model.and_then(|m| m.get("props")).and_then(Value::as_object) {
        apply(&mut features, name, props)?;
    }
    let expanded = match args.get("type").and_then(Value::as_str) {
        Some("static") => "base",
        _ => name,
    };
    let props: Map<String, Value> = features.into_iter().map(|f| (f.name, Value::Bool(f.enabled))).collect();
    Ok(json!({"model": {"name": expanded, "props": props}}))
}

/// Sets the features `props` names; QEMU's errors for a property the model lacks and for a
/// value that is not a boolean.
fn apply(features: &mut [CpuFeature], model: &str, props: &Map<String, Value>) -> Result<(), EngineError> {
    for (key, value) in props {
        let on = value
            .as_bool()
            .ok_or_else(|| EngineError::generic(format!("Invalid parameter type for '{key}', expected: boolean")))?;
        match features.iter_mut().find(|f| f.name == *key) {
            Some(f) => f.enabled = on,
            None if key == MIGRATABLE => {}
            None => return Err(EngineError::generic(format!("Property '{model}-x86_64-cpu.{key}' not found"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn features() -> Vec<CpuFeature> {
        [("fpu", true), ("avx2", false)]
            .map(|(n, e)| CpuFeature {
                name: n.into(),
                enabled: e,
            })
            .to_vec()
    }

    fn props(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn props_switch_features_and_migratable_is_taken() {
        let mut f = features();
        apply(&mut f, "host", &props(json!({"fpu": false, "avx2": true, "migratable": false}))).unwrap();
        assert_eq!(f.iter().map(|f| f.enabled).collect::<Vec<_>>(), [false, true]);
    }

    #[test]
    fn qemu_errors_for_bad_props() {
        let mut f = features();
        let e = apply(&mut f, "host", &props(json!({"bogus": true}))).unwrap_err();
        assert_eq!(e.desc, "Property 'host-x86_64-cpu.bogus' not found");
        let e = apply(&mut f, "max", &props(json!({"fpu": 3}))).unwrap_err();
        assert_eq!(e.desc, "Invalid parameter type for 'fpu', expected: boolean");
        let e = apply(&mut f, "max", &props(json!({"migratable": "no"}))).unwrap_err();
        assert_eq!(e.desc, "Invalid parameter type for 'migratable', expected: boolean");
    }
}
