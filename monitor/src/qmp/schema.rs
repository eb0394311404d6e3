//! The shapes of QMP's arguments and answers, as far as godwit's commands use them: a
//! small model of QEMU's QAPI types. One description serves three purposes: checking a
//! command's arguments (with QEMU 7.2's error texts), `query-qmp-schema`, and tests that
//! the engine's answers have the declared shape.

use serde_json::{Map, Value};

/// A QAPI type.
#[derive(Debug)]
pub enum Ty {
    Str,
    /// `int`, `int64`: any signed 64-bit integer.
    Int,
    /// `uint8`, `uint32`, `uint64`, `size`: QEMU's names for the range (`uint8_t`, ...).
    Uint(UintKind),
    Bool,
    Number,
    Any,
    /// `StrOrNull`: a string, or null.
    StrOrNull,
    Array(&'static Ty),
    Obj(&'static Obj),
    Enum(&'static Enum),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UintKind {
    U8,
    U32,
    U64,
    Size,
}

impl UintKind {
    fn max(self) -> u64 {
        match self {
            UintKind::U8 => u8::MAX.into(),
            UintKind::U32 => u32::MAX.into(),
            UintKind::U64 | UintKind::Size => u64::MAX,
        }
    }

    /// The name QEMU's error uses.
    fn name(self) -> &'static str {
        match self {
            UintKind::U8 => "uint8_t",
            UintKind::U32 => "uint32_t",
            UintKind::U64 | UintKind::Size => "uint64",
        }
    }
}

/// A struct type.
#[derive(Debug)]
pub struct Obj {
    pub name: &'static str,
    pub members: &'static [Member],
}

#[derive(Debug)]
pub struct Member {
    pub name: &'static str,
    pub ty: &'static Ty,
    pub optional: bool,
}

/// A required member.
pub const fn req(name: &'static str, ty: &'static Ty) -> Member {
    Member { name, ty, optional: false }
}

/// An optional member.
pub const fn opt(name: &'static str, ty: &'static Ty) -> Member {
    Member { name, ty, optional: true }
}

#[derive(Debug)]
pub struct Enum {
    pub name: &'static str,
    pub values: &'static [&'static str],
}

pub static STR: Ty = Ty::Str;
pub static INT: Ty = Ty::Int;
pub static BOOL: Ty = Ty::Bool;
pub static NUMBER: Ty = Ty::Number;
pub static ANY: Ty = Ty::Any;
pub static U8: Ty = Ty::Uint(UintKind::U8);
pub static U32: Ty = Ty::Uint(UintKind::U32);
pub static U64: Ty = Ty::Uint(UintKind::U64);
pub static SIZE: Ty = Ty::Uint(UintKind::Size);
pub static STR_OR_NULL: Ty = Ty::StrOrNull;
/// The empty struct: what commands without arguments take and without answers return.
pub static EMPTY: Obj = Obj {
    name: "q_empty",
    members: &[],
};
pub static EMPTY_TY: Ty = Ty::Obj(&EMPTY);

/// Checks `args` against `obj` the way QEMU's input visitor does (members in declaration
/// order, unexpected ones afterwards); the error is QEMU's `desc`.
pub fn check_args(obj: &Obj, args: &Map<String, Value>) -> Result<(), String> {
    check_obj(obj, args, "")
}

fn path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

fn check_obj(obj: &Obj, map: &Map<String, Value>, prefix: &str) -> Result<(), String> {
    for m in obj.members {
        let full = path(prefix, m.name);
        match map.get(m.name) {
            None if m.optional => {}
            None => return Err(format!("Parameter '{full}' is missing")),
            Some(v) => check(m.ty, v, &full, m.name)?,
        }
    }
    if let Some(extra) = map.keys().find(|k| !obj.members.iter().any(|m| m.name == k.as_str())) {
        return Err(format!("Parameter '{}' is unexpected", path(prefix, extra)));
    }
    Ok(())
}

fn wrong_type(full: &str, expected: &str) -> String {
    format!("Invalid parameter type for '{full}', expected: {expected}")
}

/// `full` is the member's path (`capabilities[0].state`), `leaf` its own name (which
/// QEMU's enum error uses alone).
fn check(ty: &Ty, v: &Value, full: &str, leaf: &str) -> Result<(), String> {
    match ty {
        Ty::Str => v.as_str().map(|_| ()).ok_or_else(|| wrong_type(full, "string")),
        Ty::StrOrNull => match v {
            Value::String(_) | Value::Null => Ok(()),
            // QEMU names the alternate type.
            _ => Err(wrong_type(full, "StrOrNull")),
        },
        Ty::Bool => v.as_bool().map(|_| ()).ok_or_else(|| wrong_type(full, "boolean")),
        Ty::Number => v.as_f64().map(|_| ()).ok_or_else(|| wrong_type(full, "number")),
        Ty::Any => Ok(()),
        Ty::Int => {
            let n = v.as_number().ok_or_else(|| wrong_type(full, "integer"))?;
            n.as_i64().map(|_| ()).ok_or_else(|| format!("Parameter '{full}' expects integer"))
        }
        Ty::Uint(kind) => {
            let n = v.as_number().ok_or_else(|| wrong_type(full, "integer"))?;
            // Like QEMU, negative numbers are taken for unsigned 64-bit ones.
            let u = n.as_u64().or_else(|| n.as_i64().map(|i| i as u64));
            match u {
                Some(u) if u <= kind.max() && (n.as_u64().is_some() || matches!(kind, UintKind::U64 | UintKind::Size)) => Ok(()),
                _ => Err(format!("Parameter '{full}' expects {}", kind.name())),
            }
        }
        Ty::Enum(e) => {
            let s = v.as_str().ok_or_else(|| wrong_type(full, "string"))?;
            if e.values.contains(&s) {
                Ok(())
            } else {
                Err(format!("Parameter '{leaf}' does not accept value '{s}'"))
            }
        }
        Ty::Array(elem) => {
            let list = v.as_array().ok_or_else(|| wrong_type(full, "array"))?;
            for (i, item) in list.iter().enumerate() {
                check(elem, item, &format!("{full}[{i}]"), leaf)?;
            }
            Ok(())
        }
        Ty::Obj(obj) => {
            let map = v.as_object().ok_or_else(|| wrong_type(full, "object"))?;
            check_obj(obj, map, full)
        }
    }
}

/// Whether `v` has the shape `ty` declares (every required member present, no member
/// undeclared, every value of its type): for tests of the engine's answers.
pub fn conforms(ty: &Ty, v: &Value) -> Result<(), String> {
    match (ty, v) {
        (Ty::Obj(obj), Value::Object(map)) => {
            for m in obj.members {
                match map.get(m.name) {
                    None if m.optional => {}
                    None => return Err(format!("{}: member '{}' missing", obj.name, m.name)),
                    Some(v) => conforms(m.ty, v).map_err(|e| format!("{}.{}: {e}", obj.name, m.name))?,
                }
            }
            match map.keys().find(|k| !obj.members.iter().any(|m| m.name == k.as_str())) {
                Some(k) => Err(format!("{}: member '{k}' undeclared", obj.name)),
                None => Ok(()),
            }
        }
        (Ty::Array(elem), Value::Array(list)) => list.iter().try_for_each(|i| conforms(elem, i)),
        (Ty::Uint(_), Value::Number(n)) if n.as_u64().is_some() => Ok(()),
        (ty, v) => check(ty, v, "value", "value"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    static CAP_ENUM: Enum = Enum {
        name: "Cap",
        values: &["events", "block"],
    };
    static CAP_TY: Ty = Ty::Enum(&CAP_ENUM);
    static CAP_STATUS: Obj = Obj {
        name: "CapStatus",
        members: &[req("capability", &CAP_TY), req("state", &BOOL)],
    };
    static CAP_STATUS_TY: Ty = Ty::Obj(&CAP_STATUS);
    static CAP_LIST: Ty = Ty::Array(&CAP_STATUS_TY);
    static ARGS: Obj = Obj {
        name: "args",
        members: &[
            req("capabilities", &CAP_LIST),
            opt("level", &U8),
            opt("limit", &U64),
            opt("tls", &STR_OR_NULL),
        ],
    };

    fn err(v: Value) -> String {
        check_args(&ARGS, v.as_object().unwrap()).unwrap_err()
    }

    #[test]
    fn qemu_texts() {
        assert_eq!(err(json!({})), "Parameter 'capabilities' is missing");
        assert_eq!(
            err(json!({"capabilities": {}})),
            "Invalid parameter type for 'capabilities', expected: array"
        );
        assert_eq!(
            err(json!({"capabilities": [{"capability": "bogus", "state": true}]})),
            "Parameter 'capability' does not accept value 'bogus'"
        );
        assert_eq!(
            err(json!({"capabilities": [{"capability": "events", "state": 1}]})),
            "Invalid parameter type for 'capabilities[0].state', expected: boolean"
        );
        assert_eq!(
            err(json!({"capabilities": [{"capability": "events"}]})),
            "Parameter 'capabilities[0].state' is missing"
        );
        assert_eq!(
            err(json!({"capabilities": [{"capability": "events", "state": true, "x": 1}]})),
            "Parameter 'capabilities[0].x' is unexpected"
        );
        assert_eq!(err(json!({"capabilities": [], "level": 300})), "Parameter 'level' expects uint8_t");
        assert_eq!(err(json!({"capabilities": [], "level": -1})), "Parameter 'level' expects uint8_t");
        assert_eq!(err(json!({"capabilities": [], "limit": 1.5})), "Parameter 'limit' expects uint64");
        assert_eq!(
            err(json!({"capabilities": [], "limit": "x"})),
            "Invalid parameter type for 'limit', expected: integer"
        );
        assert_eq!(err(json!({"capabilities": [], "x": 1})), "Parameter 'x' is unexpected");
        assert_eq!(
            err(json!({"capabilities": [], "tls": 5})),
            "Invalid parameter type for 'tls', expected: StrOrNull"
        );
        let ok = json!({"capabilities": [], "limit": -1, "tls": null});
        assert!(check_args(&ARGS, ok.as_object().unwrap()).is_ok());
    }

    #[test]
    fn conformance() {
        assert!(conforms(&CAP_STATUS_TY, &json!({"capability": "block", "state": false})).is_ok());
        assert!(conforms(&CAP_STATUS_TY, &json!({"capability": "block"})).is_err());
        assert!(conforms(&CAP_STATUS_TY, &json!({"capability": "block", "state": true, "x": 1})).is_err());
    }
}
