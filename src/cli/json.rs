//! QEMU's JSON spelling of `-device`, `-object`, `-audiodev` and `-blockdev` (what libvirt
//! writes: `-device '{"driver":"isa-serial","id":"serial0","index":0}'`), read as the
//! `key=value` form the option's own parser takes (members after the type in name order).

use super::CliError;

/// `value` in the `type,key=value,...` form: a JSON object's `type_key` member first, the
/// others after it (booleans as `on`/`off`, commas in strings doubled). Anything not
/// starting with `{` is returned as it is.
pub fn keyval(option: &str, value: &str, type_key: &str) -> Result<String, CliError> {
    if !value.trim_start().starts_with('{') {
        return Ok(value.to_string());
    }
    let fail = |m: String| CliError(format!("-{option} {value}: {m}"));
    let obj: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(value).map_err(|e| fail(format!("JSON parse error, {e}")))?;
    let ty = match obj.get(type_key) {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => return Err(fail(format!("Invalid parameter type for '{type_key}', expected: string"))),
        None => return Err(fail(format!("Parameter '{type_key}' is missing"))),
    };
    let mut out = escape(&ty);
    for (k, v) in obj.iter().filter(|(k, _)| *k != type_key) {
        let text = match v {
            serde_json::Value::String(s) => escape(s),
            serde_json::Value::Bool(b) => (if *b { "on" } else { "off" }).to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(fail(format!("Parameter '{k}': godwit takes no nested values here"))),
        };
        out.push_str(&format!(",{k}={text}"));
    }
    Ok(out)
}

fn escape(s: &str) -> String {
    s.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_becomes_keyval() {
        let v = r#"{"driver":"isa-serial","chardev":"charserial0","id":"serial0","index":0}"#;
        assert_eq!(
            keyval("device", v, "driver").unwrap(),
            "isa-serial,chardev=charserial0,id=serial0,index=0"
        );
        let o = r#"{"qom-type":"secret","id":"s","file":"/a,b","x":true}"#;
        assert_eq!(keyval("object", o, "qom-type").unwrap(), "secret,file=/a,,b,id=s,x=on");
        assert_eq!(keyval("device", "virtio-net-pci,id=n", "driver").unwrap(), "virtio-net-pci,id=n");
        assert_eq!(
            keyval("device", r#"{"id":"x"}"#, "driver").unwrap_err().0,
            r#"-device {"id":"x"}: Parameter 'driver' is missing"#
        );
        assert!(
            keyval("device", "{bad", "driver")
                .unwrap_err()
                .0
                .starts_with("-device {bad: JSON parse error")
        );
        assert!(keyval("device", r#"{"driver":"a","b":{"c":1}}"#, "driver").is_err());
    }
}
