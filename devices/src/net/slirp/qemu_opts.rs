//! Splitting a QemuOpts option string (`user,id=n0,hostfwd=tcp::2222-:22`) the way QEMU 7.2
//! does: `,,` is a literal comma inside a value, the first item may be a bare value for the
//! implied key (`type`), and a bare `foo` / `nofoo` elsewhere is the deprecated short form
//! of `foo=on` / `foo=off`, accepted with QEMU's warning.

/// One `key=value` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opt {
    pub key: String,
    pub value: String,
}

/// The items of `text`, in order, and the warnings QEMU prints for them.
pub fn split(text: &str, implied_key: &str) -> (Vec<Opt>, Vec<String>) {
    let mut opts = Vec::new();
    let mut warnings = Vec::new();
    let mut rest = text;
    let mut first = true;
    while !rest.is_empty() {
        let name_len = rest.find(['=', ',']).unwrap_or(rest.len());
        let opt = if rest[name_len..].starts_with('=') {
            let (value, after) = value(&rest[name_len + 1..]);
            let opt = Opt {
                key: rest[..name_len].to_string(),
                value,
            };
            rest = after;
            opt
        } else if first {
            let (value, after) = value(rest);
            rest = after;
            Opt {
                key: implied_key.to_string(),
                value,
            }
        } else {
            let written = &rest[..name_len];
            rest = &rest[name_len..];
            let opt = short_form(written);
            warnings.push(format!(
                "short-form boolean option '{written}' deprecated\nPlease use {}={} instead",
                opt.key, opt.value
            ));
            opt
        };
        opts.push(opt);
        rest = rest.strip_prefix(',').unwrap_or(rest);
        first = false;
    }
    (opts, warnings)
}

/// A value up to the first single comma (`,,` stands for `,`), and what follows it (starting
/// at that comma).
fn value(text: &str) -> (String, &str) {
    let mut out = String::new();
    let mut rest = text;
    loop {
        match rest.find(',') {
            None => {
                out.push_str(rest);
                return (out, "");
            }
            Some(at) if rest[at + 1..].starts_with(',') => {
                out.push_str(&rest[..=at]);
                rest = &rest[at + 2..];
            }
            Some(at) => {
                out.push_str(&rest[..at]);
                return (out, &rest[at..]);
            }
        }
    }
}

/// `foo` is `foo=on`, `nofoo` is `foo=off`.
fn short_form(written: &str) -> Opt {
    match written.strip_prefix("no") {
        Some(key) => Opt {
            key: key.to_string(),
            value: "off".to_string(),
        },
        None => Opt {
            key: written.to_string(),
            value: "on".to_string(),
        },
    }
}

/// QAPI's boolean spellings (`qapi_bool_parse`), case-sensitive as in QEMU.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// QEMU's `id_wellformed`: a letter, then letters, digits, `-`, `.` and `_`.
pub fn id_wellformed(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic()) && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        split(text, "type").0.into_iter().map(|o| (o.key, o.value)).collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn splits_items_and_the_implied_first_key() {
        assert_eq!(
            pairs("user,id=n0,hostfwd=tcp::1-:2"),
            vec![pair("type", "user"), pair("id", "n0"), pair("hostfwd", "tcp::1-:2")]
        );
        assert_eq!(pairs("id=n,type=user"), vec![pair("id", "n"), pair("type", "user")]);
        assert_eq!(pairs("user,"), vec![pair("type", "user")]);
        assert_eq!(pairs("user,hostname="), vec![pair("type", "user"), pair("hostname", "")]);
    }

    #[test]
    fn double_commas_are_literal_commas() {
        assert_eq!(pairs("user,id=n,,a"), vec![pair("type", "user"), pair("id", "n,a")]);
        assert_eq!(
            pairs("user,x=a,,,,b,y=c"),
            vec![pair("type", "user"), pair("x", "a,,b"), pair("y", "c")]
        );
    }

    #[test]
    fn short_form_booleans_warn() {
        let (opts, warnings) = split("user,restrict,noipv6", "type");
        assert_eq!(
            opts[1],
            Opt {
                key: "restrict".into(),
                value: "on".into()
            }
        );
        assert_eq!(
            opts[2],
            Opt {
                key: "ipv6".into(),
                value: "off".into()
            }
        );
        assert_eq!(
            warnings,
            vec![
                "short-form boolean option 'restrict' deprecated\nPlease use restrict=on instead",
                "short-form boolean option 'noipv6' deprecated\nPlease use ipv6=off instead",
            ]
        );
    }

    #[test]
    fn booleans_and_ids() {
        assert_eq!(parse_bool("y"), Some(true));
        assert_eq!(parse_bool("no"), Some(false));
        assert_eq!(parse_bool("ON"), None);
        assert!(id_wellformed("n0.a-b_c"));
        assert!(!id_wellformed(""));
        assert!(!id_wellformed("1a"));
        assert!(!id_wellformed("a b"));
    }
}
