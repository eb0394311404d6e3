//! `-object`: TLS credentials (`tls-creds-x509`, `tls-creds-psk`), `authz-simple`, `secret`
//! (checked readable; nothing uses it yet) and `memory-backend-ram` (the guest RAM when
//! `-machine memory-backend=ID` names it), in QEMU's two spellings: `TYPE,id=ID,key=value,...` (a `,,` is a comma inside a value) and
//! the JSON object `{"qom-type": TYPE, "id": ID, ...}`. Parsing only: the credentials are
//! read and checked when the machine starts (`migration::tls::Objects::load`), as QEMU
//! reads them once its options are parsed.

use super::CliError;
use crate::config::{Config, Endpoint, ObjectConfig, ObjectKind};
use std::path::PathBuf;

/// One property's value: keyval text, or JSON.
#[derive(Debug, Clone, PartialEq)]
enum Prop {
    Text(String),
    Json(serde_json::Value),
}

/// QEMU's `-object` types godwit knows but does not implement.
const UNSUPPORTED_TYPES: &[&str] = &[
    "tls-creds-anon",
    "tls-cipher-suites",
    "secret_keyring",
    "memory-backend-file",
    "memory-backend-memfd",
    "authz-list",
    "authz-listfile",
    "authz-pam",
];

/// Parses one `-object` value into `cfg.objects`.
pub fn object(spec: &str, cfg: &mut Config) -> Result<(), CliError> {
    let fail = |msg: String| CliError(format!("-object {spec}: {msg}"));
    let props = if spec.trim_start().starts_with('{') {
        json_props(spec).map_err(fail)?
    } else {
        keyval_props(spec).map_err(fail)?
    };
    let obj = build(spec, props).map_err(fail)?;
    if cfg.objects.iter().any(|o| o.id == obj.id) {
        return Err(fail(format!("Duplicate ID '{}' for object", obj.id)));
    }
    cfg.objects.push(obj);
    Ok(())
}

/// `TYPE,key=value,...`: the type may also be spelled `qom-type=TYPE`.
fn keyval_props(spec: &str) -> Result<Vec<(String, Prop)>, String> {
    let mut out = Vec::new();
    for (i, item) in split_commas(spec).into_iter().enumerate() {
        match item.split_once('=') {
            Some((k, v)) => out.push((k.to_string(), Prop::Text(v.to_string()))),
            None if i == 0 => out.push(("qom-type".to_string(), Prop::Text(item))),
            None => return Err(format!("Expected '=' after parameter '{item}'")),
        }
    }
    Ok(out)
}

/// Splits at single commas; `,,` stands for a comma.
fn split_commas(s: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                items.last_mut().expect("never empty").push(',');
            }
            ',' => items.push(String::new()),
            c => items.last_mut().expect("never empty").push(c),
        }
    }
    items
}

/// The JSON form, parsed as QEMU parses JSON (its dialect and error texts).
fn json_props(spec: &str) -> Result<Vec<(String, Prop)>, String> {
    use monitor::qmp::lexer::{Framed, Framer};
    let mut framer = Framer::new();
    let mut frames = framer.feed(spec.as_bytes());
    let value = match frames.drain(..).next() {
        Some(Framed::Value(tokens)) => monitor::qmp::parser::parse(&tokens)?,
        Some(Framed::Error(e)) => return Err(e),
        None => return Err("JSON parse error, expecting value".into()),
    };
    let serde_json::Value::Object(map) = value else {
        return Err("Invalid parameter type, expected: object".into());
    };
    Ok(map.into_iter().map(|(k, v)| (k, Prop::Json(v))).collect())
}

/// Takes the properties one by one; whatever is left over is not a property of the type.
struct Props(Vec<(String, Prop)>);

impl Props {
    fn take(&mut self, name: &str) -> Option<Prop> {
        let i = self.0.iter().rposition(|(k, _)| k == name)?;
        let p = self.0.remove(i).1;
        self.0.retain(|(k, _)| k != name);
        Some(p)
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, String> {
        match self.take(name) {
            None => Ok(None),
            Some(Prop::Text(t)) => Ok(Some(t)),
            Some(Prop::Json(serde_json::Value::String(s))) => Ok(Some(s)),
            Some(Prop::Json(_)) => Err(format!("Invalid parameter type for '{name}', expected: string")),
        }
    }

    fn required(&mut self, name: &str) -> Result<String, String> {
        self.string(name)?.ok_or_else(|| format!("Parameter '{name}' is missing"))
    }

    fn boolean(&mut self, name: &str, default: bool) -> Result<bool, String> {
        match self.take(name) {
            None => Ok(default),
            Some(Prop::Text(t)) => match t.as_str() {
                "on" | "yes" | "true" => Ok(true),
                "off" | "no" | "false" => Ok(false),
                _ => Err(format!("Parameter '{name}' expects 'on' or 'off'")),
            },
            Some(Prop::Json(serde_json::Value::Bool(b))) => Ok(b),
            Some(Prop::Json(_)) => Err(format!("Invalid parameter type for '{name}', expected: boolean")),
        }
    }

    fn endpoint(&mut self) -> Result<Endpoint, String> {
        match self.string("endpoint")?.as_deref() {
            None | Some("client") => Ok(Endpoint::Client),
            Some("server") => Ok(Endpoint::Server),
            Some(v) => Err(format!("Parameter 'endpoint' does not accept value '{v}'")),
        }
    }

    /// QEMU's last check: a property the type does not have.
    fn done(self) -> Result<(), String> {
        match self.0.first() {
            Some((k, _)) => Err(format!("Invalid parameter '{k}'")),
            None => Ok(()),
        }
    }
}

/// An identifier as QEMU's objects need it: a letter, then letters, digits, `-`, `.`, `_`.
fn valid_id(id: &str) -> bool {
    let mut c = id.chars();
    c.next().is_some_and(|f| f.is_ascii_alphabetic()) && c.all(|ch| ch.is_ascii_alphanumeric() || "-._".contains(ch))
}

fn build(spec: &str, props: Vec<(String, Prop)>) -> Result<ObjectConfig, String> {
    let mut p = Props(props);
    let ty = p.required("qom-type")?;
    if UNSUPPORTED_TYPES.contains(&ty.as_str()) {
        return Err(format!("objects of type '{ty}' are not supported by godwit"));
    }
    if !matches!(
        ty.as_str(),
        "tls-creds-x509" | "tls-creds-psk" | "authz-simple" | "secret" | "memory-backend-ram"
    ) {
        return Err(format!("Parameter 'qom-type' does not accept value '{ty}'"));
    }
    let id = p.required("id")?;
    if !valid_id(&id) {
        return Err("Parameter 'id' expects an identifier\n\
                    Identifiers consist of letters, digits, '-', '.', '_', starting with a letter."
            .into());
    }
    let kind = match ty.as_str() {
        "authz-simple" => ObjectKind::AuthzSimple {
            identity: p.required("identity")?,
        },
        "secret" => secret(&mut p)?,
        "memory-backend-ram" => memory_backend_ram(&mut p)?,
        tls => {
            let dir = p.string("dir")?.map(PathBuf::from);
            let endpoint = p.endpoint()?;
            let verify_peer = p.boolean("verify-peer", true)?;
            // GnuTLS priority strings mean nothing to rustls: TLS 1.3 with its defaults.
            let _ = p.string("priority")?;
            if p.string("passwordid")?.is_some() {
                return Err("encrypted private keys (passwordid) are not supported by godwit".into());
            }
            if tls == "tls-creds-x509" {
                let sanity_check = p.boolean("sanity-check", true)?;
                ObjectKind::TlsCredsX509 {
                    dir,
                    endpoint,
                    verify_peer,
                    sanity_check,
                }
            } else {
                let username = p.string("username")?.unwrap_or_else(|| "qemu".into());
                ObjectKind::TlsCredsPsk { dir, endpoint, username }
            }
        }
    };
    p.done()?;
    Ok(ObjectConfig {
        id,
        kind,
        spec: spec.to_string(),
    })
}

/// `secret,id=..,(data=..|file=..)[,format=raw|base64]`: QEMU reads a file secret at once.
fn secret(p: &mut Props) -> Result<ObjectKind, String> {
    if let Some(f) = p.string("format")?
        && !matches!(f.as_str(), "raw" | "base64")
    {
        return Err(format!("Parameter 'format' does not accept value '{f}'"));
    }
    if p.string("keyid")?.is_some() || p.string("iv")?.is_some() {
        return Err("godwit's secrets are not encrypted (no keyid, iv)".into());
    }
    match (p.string("data")?, p.string("file")?) {
        (Some(_), Some(_)) => Err("'data' and 'file' are mutually exclusive".into()),
        (None, None) => Err("Either 'data' or 'file' must be provided".into()),
        (None, Some(f)) => std::fs::metadata(&f)
            .map(|_| ObjectKind::Secret)
            .map_err(|e| format!("Unable to read {f}: {}", crate::errtext::io(&e))),
        (Some(_), None) => Ok(ObjectKind::Secret),
    }
}

/// `memory-backend-ram,id=..,size=N`: ordinary anonymous RAM, which is what godwit's guest
/// RAM is; options that would change that are refused.
fn memory_backend_ram(p: &mut Props) -> Result<ObjectKind, String> {
    let size = match p.take("size") {
        None => None,
        Some(Prop::Text(t)) => Some(super::parse_size(&t, 1).ok_or_else(|| format!("Parameter 'size' expects a size, not '{t}'"))?),
        Some(Prop::Json(v)) => Some(v.as_u64().ok_or("Invalid parameter type for 'size', expected: integer")?),
    };
    for harmless in ["x-use-canonical-path-for-ramblock-id", "dump", "merge"] {
        p.take(harmless);
    }
    for (name, default) in [("share", false), ("prealloc", false), ("reserve", true)] {
        if p.boolean(name, default)? != default {
            return Err(format!("godwit's guest RAM has no '{name}' other than its default"));
        }
    }
    if let Some(v) = p.string("policy")?
        && v != "default"
    {
        return Err(format!("godwit's guest RAM has no 'policy={v}'"));
    }
    for unsupported in ["host-nodes", "prealloc-threads"] {
        if p.take(unsupported).is_some() {
            return Err(format!("godwit's guest RAM has no '{unsupported}'"));
        }
    }
    match size {
        Some(size) if size > 0 => Ok(ObjectKind::MemoryBackendRam { size }),
        _ => Err("can't create backend with size 0".into()),
    }
}

/// Once every option is read: `-machine memory-backend=ID` names a RAM back end whose size
/// is the machine's.
pub fn finish(cfg: &mut Config) -> Result<(), CliError> {
    let Some(id) = &cfg.memory_backend else { return Ok(()) };
    let size = cfg
        .objects
        .iter()
        .find_map(|o| match o.kind {
            ObjectKind::MemoryBackendRam { size } if o.id == *id => Some(size),
            _ => None,
        })
        .ok_or_else(|| CliError(format!("Memory backend '{id}' not found")))?;
    if cfg.mem_given && size != cfg.mem_size {
        return Err(CliError("Memory size does not match the size of the memory backend".into()));
    }
    cfg.mem_size = size;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(spec: &str) -> Result<ObjectConfig, String> {
        let mut cfg = Config::default();
        object(spec, &mut cfg).map_err(|e| e.0)?;
        Ok(cfg.objects.remove(0))
    }

    #[test]
    fn keyval_and_json_spellings() {
        let k = one("tls-creds-x509,id=tls0,dir=/etc/pki/qemu,endpoint=server,verify-peer=off").unwrap();
        assert_eq!(
            k.kind,
            ObjectKind::TlsCredsX509 {
                dir: Some("/etc/pki/qemu".into()),
                endpoint: Endpoint::Server,
                verify_peer: false,
                sanity_check: true,
            }
        );
        let j = one(r#"{"qom-type":"tls-creds-x509","id":"tls0","dir":"/etc/pki/qemu","endpoint":"server","verify-peer":false}"#).unwrap();
        assert_eq!(j.kind, k.kind);
        assert_eq!(j.id, "tls0");
        let a = one("authz-simple,id=auth0,identity=C=GB,,O=Example Org,,CN=client").unwrap();
        assert_eq!(
            a.kind,
            ObjectKind::AuthzSimple {
                identity: "C=GB,O=Example Org,CN=client".into()
            }
        );
        let p = one("qom-type=tls-creds-psk,id=p,dir=/k").unwrap();
        assert_eq!(
            p.kind,
            ObjectKind::TlsCredsPsk {
                dir: Some("/k".into()),
                endpoint: Endpoint::Client,
                username: "qemu".into()
            }
        );
    }

    #[test]
    fn qemu_texts() {
        let cases = [
            (
                "tls-creds-x509,id=t,dir=/d,endpoint=bogus",
                "Parameter 'endpoint' does not accept value 'bogus'",
            ),
            ("authz-simple,id=a", "Parameter 'identity' is missing"),
            (
                "tls-creds-x509,id=t,dir=/d,verify-peer=maybe",
                "Parameter 'verify-peer' expects 'on' or 'off'",
            ),
            ("bogus-type,id=x", "Parameter 'qom-type' does not accept value 'bogus-type'"),
            ("tls-creds-x509,dir=/d", "Parameter 'id' is missing"),
            ("tls-creds-x509,id=t,dir=/d,foo=1", "Invalid parameter 'foo'"),
            (
                r#"{"qom-type":"tls-creds-x509","id":"t","verify-peer":"no"}"#,
                "Invalid parameter type for 'verify-peer', expected: boolean",
            ),
            ("{\"qom-type\": bad}", "JSON parse error, invalid keyword 'bad'"),
            ("{\"qom-type\": ", "JSON parse error, expecting value"),
        ];
        for (spec, want) in cases {
            assert_eq!(one(spec).unwrap_err(), format!("-object {spec}: {want}"), "{spec}");
        }
        assert!(
            one("tls-creds-x509,id=1bad,dir=/d")
                .unwrap_err()
                .contains("expects an identifier\nIdentifiers")
        );
        let mut cfg = Config::default();
        object("tls-creds-x509,id=t,dir=/d", &mut cfg).unwrap();
        let e = object("authz-simple,id=t,identity=x", &mut cfg).unwrap_err();
        assert_eq!(e.0, "-object authz-simple,id=t,identity=x: Duplicate ID 't' for object");
    }

    use crate::cli::test_line as run;

    #[test]
    fn libvirt_objects() {
        let c = run(r#"-kernel k -machine pc-i440fx-7.2,memory-backend=pc.ram -m 256 -object {"qom-type":"memory-backend-ram","id":"pc.ram","size":268435456} -object {"qom-type":"secret","id":"masterKey0","format":"raw","file":"/dev/null"}"#).unwrap();
        assert_eq!(c.mem_size, 256 << 20);
        assert_eq!(c.objects.len(), 2);
        assert_eq!(c.objects[0].qom_type(), "memory-backend-ram");
        assert_eq!(
            run("-kernel k -machine memory-backend=ram -m 256 -object memory-backend-ram,id=ram,size=128M").unwrap_err(),
            "Memory size does not match the size of the memory backend"
        );
        assert_eq!(
            run("-kernel k -machine memory-backend=x").unwrap_err(),
            "Memory backend 'x' not found"
        );
        assert_eq!(
            run("-kernel k -object memory-backend-file,id=m,size=1G").unwrap_err(),
            "-object memory-backend-file,id=m,size=1G: objects of type 'memory-backend-file' are not supported by godwit"
        );
        assert_eq!(
            run("-kernel k -object secret,id=s,file=/nonexistent").unwrap_err(),
            "-object secret,id=s,file=/nonexistent: Unable to read /nonexistent: No such file or directory"
        );
        assert_eq!(
            run("-kernel k -object secret,data=x").unwrap_err(),
            "-object secret,data=x: Parameter 'id' is missing"
        );
        assert!(run("-kernel k -object memory-backend-ram,id=m,size=1G,share=on").is_err());
    }
}
