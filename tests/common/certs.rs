//! Test certificates made at test time with rcgen: a CA, and server and client certificates
//! it signs, written under QEMU's file names. Shared by the integration tests and the TLS
//! module's unit tests (which include this file).
#![allow(dead_code)]

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::Path;

/// The client's subject, and the identity `authz-simple` must name to let it in.
pub const CLIENT_DN: &str = "C=GB,L=London,O=Example Org,CN=client.example.com";

pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub pem: String,
}

/// A certificate and its private key, in PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, cn);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let pem = p.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(p, key),
            pem,
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str], expired: bool) -> Leaf {
        let mut p = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "server.example.com");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(p, expired)
    }

    /// A client certificate with the subject `CLIENT_DN` (or CN=`cn` alone).
    pub fn client(&self, cn: Option<&str>) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        // Fresh, so the names keep the order they are pushed in.
        p.distinguished_name = rcgen::DistinguishedName::new();
        let dn = &mut p.distinguished_name;
        match cn {
            Some(cn) => dn.push(DnType::CommonName, cn),
            None => {
                dn.push(DnType::CountryName, "GB");
                dn.push(DnType::LocalityName, "London");
                dn.push(DnType::OrganizationName, "Example Org");
                dn.push(DnType::CommonName, "client.example.com");
            }
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p, false)
    }

    /// The client certificate of `client(None)`, with a validity period long gone.
    pub fn client_expired(&self) -> Leaf {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "client.example.com");
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(p, true)
    }

    fn sign(&self, mut p: CertificateParams, expired: bool) -> Leaf {
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2020, 2, 1);
        }
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// Writes `dir/ca-cert.pem` (from `ca`) and `dir/ROLE-cert.pem`, `dir/ROLE-key.pem`.
pub fn write(dir: &Path, ca: &Ca, role: &str, leaf: Option<&Leaf>) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca-cert.pem"), &ca.pem).unwrap();
    if let Some(l) = leaf {
        std::fs::write(dir.join(format!("{role}-cert.pem")), &l.cert).unwrap();
        std::fs::write(dir.join(format!("{role}-key.pem")), &l.key).unwrap();
    }
}

/// A matching pair of credential directories: `dir/server` (for `localhost` and
/// 127.0.0.1) and `dir/client`, both trusting one CA.
pub fn pair(dir: &Path) -> Ca {
    let ca = Ca::new("godwit test CA");
    write(
        &dir.join("server"),
        &ca,
        "server",
        Some(&ca.server(&["localhost", "127.0.0.1"], false)),
    );
    write(&dir.join("client"), &ca, "client", Some(&ca.client(None)));
    ca
}
