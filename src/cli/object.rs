//! `-object TYPE,id=ID,...` (or its JSON form): the object types godwit has. `secret`
//! holds data other objects name (godwit checks it can be read and keeps no use for it
//! yet); `memory-backend-ram` is the guest RAM when `-machine memory-backend=ID` names it.

use super::drive::split_options;
use super::{CliError, parse_size};
use crate::config::{Config, ObjectConfig};

/// `-object`.
pub fn object(value: &str, cfg: &mut Config) -> Result<(), CliError> {
    let text = super::json::keyval("object", value, "qom-type")?;
    let fail = |m: &str| CliError(format!("-object {value}: {m}"));
    let parts = split_options(&text);
    let mut items = parts.iter().map(|p| p.split_once('=').unwrap_or((p.as_str(), "")));
    let qom_type = match items.next() {
        Some(("qom-type", t)) | Some((t, "")) => t.to_string(),
        _ => return Err(fail("Parameter 'qom-type' is missing")),
    };
    let opts: Vec<(&str, &str)> = items.collect();
    let id = opts.iter().find(|(k, _)| *k == "id").map(|(_, v)| v.to_string());
    let Some(id) = id else {
        return Err(fail("Parameter 'id' is missing"));
    };
    if cfg.objects.iter().any(|o| o.id == id) {
        return Err(fail(&format!(
            "attempt to add duplicate property '{id}' to object (type 'container')"
        )));
    }
    let size = match qom_type.as_str() {
        "secret" => secret(&opts).map_err(|m| fail(&m))?,
        "memory-backend-ram" => Some(memory_backend(&opts).map_err(|m| fail(&m))?),
        _ => return Err(fail(&format!("invalid object type: {qom_type}"))),
    };
    cfg.objects.push(ObjectConfig { qom_type, id, size });
    Ok(())
}

/// `secret,id=..,(data=..|file=..)[,format=raw|base64]`: QEMU reads a file secret at once.
fn secret(opts: &[(&str, &str)]) -> Result<Option<u64>, String> {
    let (mut data, mut file) = (None, None);
    for (k, v) in opts {
        match *k {
            "id" => {}
            "data" => data = Some(*v),
            "file" => file = Some(*v),
            "format" => {
                if !matches!(*v, "raw" | "base64") {
                    return Err(format!("Parameter 'format' does not accept value '{v}'"));
                }
            }
            "keyid" | "iv" => return Err("godwit's secrets are not encrypted (no keyid, iv)".into()),
            _ => return Err(format!("Property 'secret.{k}' not found")),
        }
    }
    match (data, file) {
        (Some(_), Some(_)) => Err("'data' and 'file' are mutually exclusive".into()),
        (None, None) => Err("Either 'data' or 'file' must be provided".into()),
        (None, Some(f)) => std::fs::metadata(f)
            .map(|_| None)
            .map_err(|e| format!("Unable to read {f}: {}", crate::errtext::io(&e))),
        (Some(_), None) => Ok(None),
    }
}

/// `memory-backend-ram,id=..,size=N`: ordinary anonymous RAM, which is what godwit's guest
/// RAM is; options that would change that are refused.
fn memory_backend(opts: &[(&str, &str)]) -> Result<u64, String> {
    let mut size = None;
    for (k, v) in opts {
        let off = matches!(*v, "off" | "no" | "false");
        match *k {
            "id" => {}
            "size" => size = Some(parse_size(v, 1).ok_or_else(|| format!("Parameter 'size' expects a size, not '{v}'"))?),
            "x-use-canonical-path-for-ramblock-id" | "dump" | "merge" => {}
            "share" | "prealloc" | "reserve" if off => {}
            "policy" if *v == "default" => {}
            "share" | "prealloc" | "reserve" | "policy" | "host-nodes" | "prealloc-threads" => {
                return Err(format!("godwit's guest RAM has no '{k}={v}'"));
            }
            _ => return Err(format!("Property 'memory-backend-ram.{k}' not found")),
        }
    }
    size.ok_or_else(|| "can't create backend with size 0".to_string())
}

/// Once every option is read: `-machine memory-backend=ID` names a RAM back end whose size
/// is the machine's.
pub fn finish(cfg: &mut Config) -> Result<(), CliError> {
    let Some(id) = &cfg.memory_backend else { return Ok(()) };
    let backend = cfg
        .objects
        .iter()
        .find(|o| o.id == *id && o.qom_type == "memory-backend-ram")
        .ok_or_else(|| CliError(format!("Memory backend '{id}' not found")))?;
    let size = backend.size.unwrap_or(0);
    if cfg.mem_given && size != cfg.mem_size {
        return Err(CliError("Memory size does not match the size of the memory backend".into()));
    }
    cfg.mem_size = size;
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Action, parse};

    fn run(line: &str) -> Result<crate::config::Config, String> {
        match parse(line.split_whitespace().map(String::from)) {
            Ok(Action::Run(c)) => Ok(*c),
            Ok(Action::Print(t)) => Err(format!("printed: {t}")),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn libvirt_objects() {
        let c = run(r#"-kernel k -machine pc-i440fx-7.2,memory-backend=pc.ram -m 256 -object {"qom-type":"memory-backend-ram","id":"pc.ram","size":268435456} -object {"qom-type":"secret","id":"masterKey0","format":"raw","file":"/dev/null"}"#).unwrap();
        assert_eq!(c.mem_size, 256 << 20);
        assert_eq!(c.objects.len(), 2);
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
            "-object memory-backend-file,id=m,size=1G: invalid object type: memory-backend-file"
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
