//! `tls-creds-x509`: the PEM files QEMU reads from the credentials directory, read and
//! checked when godwit starts (as QEMU checks them when it creates the object), and
//! turned into rustls configurations once, for every migration to use.
//!
//! | endpoint | files |
//! |---|---|
//! | both | `ca-cert.pem` (the CAs the peer's certificate must chain to), `ca-crl.pem` if present |
//! | server | `server-cert.pem`, `server-key.pem` |
//! | client | `client-cert.pem`, `client-key.pem` if present (a server with `verify-peer=on` requires them) |

use super::TlsError;
use crate::config::Endpoint;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The crypto provider: ring (builds with a C compiler alone; aws-lc-rs, rustls's other
/// provider, would need cmake and clang). rustls marks ring's provider deprecated for
/// lacking post-quantum key exchange (X25519MLKEM768), which QEMU 7.2's GnuTLS lacks too.
#[allow(deprecated)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loaded x509 credentials: the rustls configuration of their endpoint.
#[derive(Debug, Clone)]
pub struct X509 {
    pub endpoint: Endpoint,
    pub verify_peer: bool,
    pub client: Option<Arc<ClientConfig>>,
    pub server: Option<Arc<ServerConfig>>,
}

/// What `-object tls-creds-x509` says.
pub struct X509Spec<'a> {
    pub dir: Option<&'a Path>,
    pub endpoint: Endpoint,
    pub verify_peer: bool,
    pub sanity_check: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Access {
        path: path.to_path_buf(),
        why: crate::errtext::io(&e),
    })
}

/// QEMU's first look at a file: it must open for reading (a directory does).
fn accessible(path: &Path) -> Result<(), TlsError> {
    std::fs::File::open(path).map(drop).map_err(|e| TlsError::Access {
        path: path.to_path_buf(),
        why: crate::errtext::io(&e),
    })
}

/// Every certificate in a PEM file (at least one).
fn certs(what: &'static str, path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let import = |why: String| TlsError::Import {
        what,
        path: path.to_path_buf(),
        why,
    };
    let list: Vec<_> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|e| import(e.to_string()))?;
    if list.is_empty() {
        return Err(import("no PEM certificate in the file".into()));
    }
    Ok(list)
}

/// A certificate with its key, as `NAME-cert.pem` and `NAME-key.pem`.
struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: PathBuf,
}

fn identity(dir: &Path, role: &'static str) -> Result<Identity, TlsError> {
    let cert_path = dir.join(format!("{role}-cert.pem"));
    let key_path = dir.join(format!("{role}-key.pem"));
    accessible(&cert_path)?;
    accessible(&key_path)?;
    // Both there, but one will not read: GnuTLS's words, as QEMU shows them.
    let load = |p: &Path| {
        std::fs::read(p).map_err(|_| TlsError::Key {
            cert: cert_path.clone(),
            key: key_path.clone(),
            why: "Error while reading file.".into(),
        })
    };
    let (cert, key) = (load(&cert_path)?, load(&key_path)?);
    let what = if role == "server" {
        "server certificate"
    } else {
        "client certificate"
    };
    let chain = certs(what, &cert_path, &cert)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsError::Key {
        cert: cert_path.clone(),
        key: key_path.clone(),
        why: e.to_string(),
    })?;
    Ok(Identity { chain, key, cert_path })
}

/// Reads and checks the files, and builds the endpoint's configuration.
pub fn load(spec: &X509Spec<'_>) -> Result<X509, TlsError> {
    let dir = spec.dir.ok_or(TlsError::NoDir)?;
    let ca_path = dir.join("ca-cert.pem");
    let ca = certs("CA certificate", &ca_path, &read(&ca_path)?)?;
    let mut roots = RootCertStore::empty();
    for c in ca {
        roots.add(c).map_err(|e| TlsError::Import {
            what: "CA certificate",
            path: ca_path.clone(),
            why: e.to_string(),
        })?;
    }
    let roots = Arc::new(roots);
    let crl_path = dir.join("ca-crl.pem");
    let crls: Vec<CertificateRevocationListDer<'static>> = if crl_path.exists() {
        CertificateRevocationListDer::pem_slice_iter(&read(&crl_path)?)
            .collect::<Result<_, _>>()
            .map_err(|e| TlsError::Import {
                what: "CA revocation list",
                path: crl_path.clone(),
                why: e.to_string(),
            })?
    } else {
        Vec::new()
    };
    let own = match spec.endpoint {
        Endpoint::Server => Some(identity(dir, "server")?),
        // A client's certificate is optional, as in QEMU: with neither file there is none.
        Endpoint::Client if dir.join("client-cert.pem").exists() || dir.join("client-key.pem").exists() => Some(identity(dir, "client")?),
        Endpoint::Client => None,
    };
    if spec.sanity_check
        && let Some(id) = &own
    {
        check_own(spec.endpoint, id, &roots, &ca_path)?;
    }
    let configs = Configs {
        roots,
        crls,
        verify_peer: spec.verify_peer,
    };
    Ok(match spec.endpoint {
        Endpoint::Client => X509 {
            endpoint: spec.endpoint,
            verify_peer: spec.verify_peer,
            client: Some(configs.client(own)?),
            server: None,
        },
        Endpoint::Server => X509 {
            endpoint: spec.endpoint,
            verify_peer: spec.verify_peer,
            client: None,
            server: Some(configs.server(own.ok_or(TlsError::NoDir)?)?),
        },
    })
}

/// QEMU's sanity check of its own certificate: in its validity period, and issued by the
/// CA it trusts (so a mismatched directory is found at start-up, not at the migration).
fn check_own(endpoint: Endpoint, id: &Identity, roots: &Arc<RootCertStore>, ca_path: &Path) -> Result<(), TlsError> {
    use rustls::CertificateError as C;
    let leaf = &id.chain[0];
    let now = UnixTime::now();
    let result = match endpoint {
        Endpoint::Server => {
            let parsed = ParsedCertificate::try_from(leaf).map_err(|e| TlsError::Import {
                what: "server certificate",
                path: id.cert_path.clone(),
                why: e.to_string(),
            })?;
            let algs = provider().signature_verification_algorithms.all;
            rustls::client::verify_server_cert_signed_by_trust_anchor(&parsed, roots, &id.chain[1..], now, algs)
        }
        Endpoint::Client => WebPkiClientVerifier::builder_with_provider(roots.clone(), provider())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))
            .and_then(|v| v.verify_client_cert(leaf, &id.chain[1..], now).map(|_| ())),
    };
    let path = id.cert_path.clone();
    let role = endpoint.name();
    match result {
        Ok(()) => Ok(()),
        Err(rustls::Error::InvalidCertificate(C::Expired | C::ExpiredContext { .. })) => Err(TlsError::Expired { role, path }),
        Err(rustls::Error::InvalidCertificate(C::NotValidYet | C::NotValidYetContext { .. })) => Err(TlsError::NotActive { role, path }),
        Err(e) => Err(TlsError::OwnInvalid {
            cert: path,
            ca: ca_path.to_path_buf(),
            why: super::describe(&e, None),
        }),
    }
}

/// What both endpoints' configurations are built from.
struct Configs {
    roots: Arc<RootCertStore>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    verify_peer: bool,
}

impl Configs {
    fn client(self, own: Option<Identity>) -> Result<Arc<ClientConfig>, TlsError> {
        let p = provider();
        let builder = ClientConfig::builder_with_provider(p.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?;
        let verifier: Arc<dyn rustls::client::danger::ServerCertVerifier> = if self.verify_peer {
            WebPkiServerVerifier::builder_with_provider(self.roots, p.clone())
                .with_crls(self.crls)
                .build()
                .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?
        } else {
            Arc::new(super::verify::AnyServer(p))
        };
        let builder = builder.dangerous().with_custom_certificate_verifier(verifier);
        let mut config = match own {
            Some(id) => builder.with_client_auth_cert(id.chain, id.key).map_err(TlsError::Config)?,
            None => builder.with_no_client_auth(),
        };
        config.resumption = rustls::client::Resumption::disabled();
        Ok(Arc::new(config))
    }

    fn server(self, own: Identity) -> Result<Arc<ServerConfig>, TlsError> {
        let p = provider();
        let verifier = if self.verify_peer {
            WebPkiClientVerifier::builder_with_provider(self.roots, p.clone())
                .with_crls(self.crls)
                .build()
                .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?
        } else {
            WebPkiClientVerifier::no_client_auth()
        };
        let mut config = ServerConfig::builder_with_provider(p)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(TlsError::Config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(own.chain, own.key)
            .map_err(|e| TlsError::Key {
                cert: own.cert_path.clone(),
                key: own.cert_path.with_file_name("server-key.pem"),
                why: e.to_string(),
            })?;
        // One connection per migration: nothing to resume.
        config.send_tls13_tickets = 0;
        Ok(Arc::new(config))
    }
}
