//! A certificate's subject as text, the identity `authz-simple` compares: the relative
//! distinguished names in the certificate's own order, `NAME=value` joined by commas
//! (`C=GB,L=London,O=Example Org,CN=client.example.com`), which is how QEMU 7.2 (through
//! GnuTLS) names a client in `tls-authz` checks. Special characters are escaped as RFC 4514
//! escapes them. The certificate comes from the peer, so every length is checked against
//! what remains; anything malformed is `None`.

/// One DER element: its tag, its contents, and what follows it.
fn element(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = data.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &b| (a << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (len <= rest.len()).then(|| (tag, &rest[..len], &rest[len..]))
}

fn expect(data: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, content, rest) = element(data)?;
    (t == tag).then_some((content, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;

/// The subject of a DER certificate, as text.
pub fn subject(cert: &[u8]) -> Option<String> {
    let (certificate, _) = expect(cert, SEQUENCE)?;
    let (mut tbs, _) = expect(certificate, SEQUENCE)?;
    // [0] version, if present; then serial, signature algorithm, issuer, validity.
    if tbs.first() == Some(&0xa0) {
        tbs = element(tbs)?.2;
    }
    for _ in 0..4 {
        tbs = element(tbs)?.2;
    }
    let (mut rdns, _) = expect(tbs, SEQUENCE)?;
    let mut out = Vec::new();
    while !rdns.is_empty() {
        let (mut set, rest) = expect(rdns, SET)?;
        rdns = rest;
        let mut parts = Vec::new();
        while !set.is_empty() {
            let (atv, rest) = expect(set, SEQUENCE)?;
            set = rest;
            let (oid, value) = expect(atv, OID)?;
            parts.push(format!("{}={}", oid_name(oid)?, value_text(value)?));
        }
        out.push(parts.join("+"));
    }
    Some(out.join(","))
}

/// GnuTLS's short names for the usual attributes; other ones in dotted form.
fn oid_name(oid: &[u8]) -> Option<String> {
    let known: &[(&[u8], &str)] = &[
        (&[0x55, 4, 3], "CN"),
        (&[0x55, 4, 6], "C"),
        (&[0x55, 4, 7], "L"),
        (&[0x55, 4, 8], "ST"),
        (&[0x55, 4, 9], "STREET"),
        (&[0x55, 4, 10], "O"),
        (&[0x55, 4, 11], "OU"),
        (&[0x55, 4, 5], "serialNumber"),
        (&[0x55, 4, 12], "title"),
        (&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 9, 1], "EMAIL"),
        (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 1, 25], "DC"),
        (&[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 1, 1], "UID"),
    ];
    if let Some((_, name)) = known.iter().find(|(o, _)| *o == oid) {
        return Some((*name).to_string());
    }
    let (&first, rest) = oid.split_first()?;
    let mut arcs = vec![u64::from(first / 40).min(2), u64::from(first) - u64::from(first / 40).min(2) * 40];
    let mut acc = 0u64;
    for &b in rest {
        acc = acc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            arcs.push(acc);
            acc = 0;
        }
    }
    Some(arcs.iter().map(u64::to_string).collect::<Vec<_>>().join("."))
}

/// A directory string as text (escaped), or another type as `#` and its DER in hex.
fn value_text(tlv: &[u8]) -> Option<String> {
    let (tag, content, _) = element(tlv)?;
    let text = match tag {
        // UTF8String, PrintableString, TeletexString, IA5String, VisibleString
        0x0c | 0x13 | 0x14 | 0x16 | 0x1a => String::from_utf8_lossy(content).into_owned(),
        // BMPString: UTF-16, big-endian.
        0x1e if content.len() % 2 == 0 => {
            let units: Vec<u16> = content.chunks(2).map(|c| u16::from_be_bytes([c[0], c[1]])).collect();
            String::from_utf16_lossy(&units)
        }
        _ => return Some(format!("#{}", tlv.iter().map(|b| format!("{b:02x}")).collect::<String>())),
    };
    Some(escape(&text))
}

/// RFC 4514's escapes.
fn escape(s: &str) -> String {
    let mut out = String::new();
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        let special =
            matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';') || (i == 0 && (c == '#' || c == ' ')) || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_certificate_order() {
        let mut params = rcgen::CertificateParams::new(vec!["client.example.com".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        let dn = &mut params.distinguished_name;
        dn.push(rcgen::DnType::CountryName, "GB");
        dn.push(rcgen::DnType::LocalityName, "London");
        dn.push(rcgen::DnType::OrganizationName, "Example, Org");
        dn.push(rcgen::DnType::CommonName, "client.example.com");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject(cert.der()).unwrap(), "C=GB,L=London,O=Example\\, Org,CN=client.example.com");
    }

    #[test]
    fn hostile_input_is_none() {
        assert_eq!(subject(&[]), None);
        assert_eq!(subject(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(subject(&[0x30, 0x03, 0x30, 0x05, 0x00]), None);
        assert_eq!(oid_name(&[0x2b, 6, 1, 4, 1]).unwrap(), "1.3.6.1.4.1");
        assert_eq!(escape(" #a,b "), "\\ #a\\,b\\ ");
    }
}
