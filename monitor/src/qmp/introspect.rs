//! `query-qmp-schema`: godwit's own command table and events described as QEMU describes
//! its schema (`SchemaInfo` objects), with the names of non-builtin types masked by
//! numbers in order of first use, as QEMU masks them.

use super::commands::COMMANDS;
use super::schema::{EMPTY_TY, Member, Ty};
use super::types::EVENTS;
use serde_json::{Value, json};
use std::collections::HashMap;

#[derive(Default)]
struct Builder {
    /// Type key (its address) to the name it got.
    names: HashMap<usize, String>,
    /// Entries of types, in the order their names were given.
    types: Vec<Value>,
    builtins: Vec<&'static str>,
}

fn key(ty: &Ty) -> usize {
    ty as *const Ty as usize
}

impl Builder {
    fn builtin(&mut self, name: &'static str) -> String {
        if !self.builtins.contains(&name) {
            self.builtins.push(name);
        }
        name.to_string()
    }

    /// The name `ty` is known by, describing it the first time.
    fn name(&mut self, ty: &'static Ty) -> String {
        match ty {
            Ty::Str => self.builtin("str"),
            Ty::Int | Ty::Uint(_) => self.builtin("int"),
            Ty::Bool => self.builtin("bool"),
            Ty::Number => self.builtin("number"),
            Ty::Any => self.builtin("any"),
            _ => {
                if let Some(n) = self.names.get(&key(ty)) {
                    return n.clone();
                }
                self.describe(ty)
            }
        }
    }

    fn describe(&mut self, ty: &'static Ty) -> String {
        let name = match ty {
            Ty::Array(elem) => {
                let e = self.name(elem);
                let n = format!("[{e}]");
                self.names.insert(key(ty), n.clone());
                self.types.push(json!({"name": n, "meta-type": "array", "element-type": e}));
                return n;
            }
            _ => self.names.len().to_string(),
        };
        self.names.insert(key(ty), name.clone());
        let at = self.types.len();
        self.types.push(Value::Null);
        let entry = match ty {
            Ty::StrOrNull => {
                let s = self.builtin("str");
                let n = self.builtin("null");
                json!({"name": name, "meta-type": "alternate", "members": [{"type": s}, {"type": n}]})
            }
            Ty::Enum(e) => json!({
                "name": name, "meta-type": "enum", "values": e.values,
                "members": e.values.iter().map(|v| json!({"name": v})).collect::<Vec<_>>(),
            }),
            Ty::Obj(o) => {
                let members: Vec<Value> = o.members.iter().map(|m| self.member(m)).collect();
                json!({"name": name, "meta-type": "object", "members": members})
            }
            _ => Value::Null,
        };
        self.types[at] = entry;
        name
    }

    fn member(&mut self, m: &'static Member) -> Value {
        let mut v = json!({"name": m.name, "type": self.name(m.ty)});
        if m.optional {
            v["default"] = Value::Null;
        }
        v
    }
}

fn json_type(builtin: &str) -> &'static str {
    match builtin {
        "str" => "string",
        "int" => "int",
        "bool" => "boolean",
        "number" => "number",
        "null" => "null",
        _ => "value",
    }
}

/// The whole `query-qmp-schema` answer.
pub fn schema() -> Value {
    let mut b = Builder::default();
    // The empty object is "0", as in QEMU.
    b.name(&EMPTY_TY);
    let mut entries = Vec::new();
    for c in COMMANDS {
        let arg = b.name(c.args_ty);
        let ret = b.name(c.ret);
        entries.push(json!({"name": c.name, "meta-type": "command", "arg-type": arg, "ret-type": ret}));
    }
    for (name, data) in EVENTS {
        let arg = b.name(data);
        entries.push(json!({"name": name, "meta-type": "event", "arg-type": arg}));
    }
    entries.append(&mut b.types);
    for name in b.builtins {
        entries.push(json!({"name": name, "meta-type": "builtin", "json-type": json_type(name)}));
    }
    Value::Array(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_is_described_once() {
        let s = schema();
        let list = s.as_array().unwrap();
        let names: Vec<&str> = list.iter().map(|e| e["name"].as_str().unwrap()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len(), "duplicate entries");
        let has = |n: &str| names.contains(&n);
        for e in list {
            for k in ["arg-type", "ret-type", "element-type"] {
                if let Some(t) = e.get(k) {
                    assert!(has(t.as_str().unwrap()), "{e}");
                }
            }
            for m in e.get("members").and_then(Value::as_array).into_iter().flatten() {
                if let Some(t) = m.get("type") {
                    assert!(has(t.as_str().unwrap()), "{e}");
                }
            }
        }
        let status = list.iter().find(|e| e["name"] == "query-status").unwrap();
        assert_eq!(status["arg-type"], "0");
        let ret = list.iter().find(|e| e["name"] == status["ret-type"]).unwrap();
        assert_eq!(ret["members"][0], json!({"name": "running", "type": "bool"}));
        let stop = list.iter().find(|e| e["name"] == "STOP").unwrap();
        assert_eq!(stop["meta-type"], "event");
        assert!(list.iter().any(|e| e["name"] == "str" && e["json-type"] == "string"));
    }
}
