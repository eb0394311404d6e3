//! The `-object`s a migration's TLS parameters name: credentials loaded at start-up, the
//! `authz-simple` identities, and what one migration resolves them to (QEMU resolves
//! `tls-creds` when the migration starts, or when the destination's connection arrives).

use super::creds::{self, X509, X509Spec};
use super::psk::{self, Psk};
use super::{TlsError, dn};
use crate::config::{Endpoint, ObjectConfig, ObjectKind};
use rustls::pki_types::ServerName;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Creds {
    X509(X509),
    Psk(Psk),
}

/// Every TLS object of the command line, by id.
#[derive(Debug, Default)]
pub struct Objects {
    creds: HashMap<String, Creds>,
    authz: HashMap<String, String>,
}

/// The source's TLS for one migration: x509 through rustls, or a pre-shared key through
/// OpenSSL.
#[derive(Debug, Clone)]
pub enum ClientTls {
    X509 {
        config: Arc<rustls::ClientConfig>,
        name: ServerName<'static>,
    },
    Psk(Psk),
}

/// The destination's credentials for one connection.
#[derive(Debug, Clone)]
pub enum ServerCreds {
    X509(Arc<rustls::ServerConfig>),
    Psk(Psk),
}

/// The destination's TLS for one connection.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub creds: ServerCreds,
    /// `tls-authz`: the one client identity allowed (a certificate's name, or a PSK
    /// username).
    pub identity: Option<String>,
}

/// What the migration parameters say about TLS.
pub struct TlsParams<'a> {
    pub creds: &'a str,
    pub hostname: &'a str,
    pub authz: &'a str,
}

impl Objects {
    /// Reads and checks every credential object, in command-line order (the first
    /// failure is the error, as QEMU stops at the first object it cannot create).
    pub fn load(objects: &[ObjectConfig]) -> Result<Objects, TlsError> {
        let mut out = Objects::default();
        for o in objects {
            match &o.kind {
                ObjectKind::TlsCredsX509 {
                    dir,
                    endpoint,
                    verify_peer,
                    sanity_check,
                } => {
                    let spec = X509Spec {
                        dir: dir.as_deref(),
                        endpoint: *endpoint,
                        verify_peer: *verify_peer,
                        sanity_check: *sanity_check,
                    };
                    out.creds.insert(o.id.clone(), Creds::X509(creds::load(&spec)?));
                }
                ObjectKind::TlsCredsPsk { dir, endpoint, username } => {
                    out.creds
                        .insert(o.id.clone(), Creds::Psk(psk::load(dir.as_deref(), *endpoint, username)?));
                }
                ObjectKind::AuthzSimple { identity } => {
                    out.authz.insert(o.id.clone(), identity.clone());
                }
                ObjectKind::Secret | ObjectKind::MemoryBackendRam { .. } => {}
            }
        }
        Ok(out)
    }

    /// The credentials `id` names, checked for `endpoint`.
    fn creds(&self, id: &str, endpoint: Endpoint) -> Result<&Creds, TlsError> {
        let creds = self.creds.get(id).ok_or_else(|| TlsError::NoCreds(id.to_string()))?;
        let ep = match creds {
            Creds::X509(x) => x.endpoint,
            Creds::Psk(p) => p.endpoint,
        };
        if ep != endpoint {
            return Err(TlsError::Endpoint(endpoint.name()));
        }
        Ok(creds)
    }

    /// The source's TLS, or `None` when `tls-creds` is empty. `host` is the host of a
    /// `tcp:` URI, the name the server's certificate must carry unless `tls-hostname`
    /// names another.
    pub fn client(&self, p: &TlsParams<'_>, host: Option<&str>) -> Result<Option<ClientTls>, TlsError> {
        if p.creds.is_empty() {
            return Ok(None);
        }
        let x = match self.creds(p.creds, Endpoint::Client)? {
            Creds::X509(x) => x,
            // No certificate, so no hostname to check.
            Creds::Psk(k) => return Ok(Some(ClientTls::Psk(k.clone()))),
        };
        let host = match (p.hostname, host) {
            ("", Some(h)) if !h.is_empty() => h,
            ("", _) if x.verify_peer => return Err(TlsError::NoHostname),
            // Nothing is checked against it.
            ("", _) => "localhost",
            (h, _) => h,
        };
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadHostname(host.to_string()))?;
        let config = x.client.clone().ok_or(TlsError::Endpoint("client"))?;
        Ok(Some(ClientTls::X509 { config, name }))
    }

    /// The destination's TLS, or `None` when `tls-creds` is empty.
    pub fn server(&self, p: &TlsParams<'_>) -> Result<Option<ServerTls>, TlsError> {
        if p.creds.is_empty() {
            return Ok(None);
        }
        let creds = self.creds(p.creds, Endpoint::Server)?;
        let identity = match p.authz {
            "" => None,
            id => Some(self.authz.get(id).cloned().ok_or_else(|| TlsError::NoAuthz(id.to_string()))?),
        };
        let creds = match creds {
            Creds::X509(x) => ServerCreds::X509(x.server.clone().ok_or(TlsError::Endpoint("server"))?),
            Creds::Psk(k) => ServerCreds::Psk(k.clone()),
        };
        Ok(Some(ServerTls { creds, identity }))
    }
}

/// `tls-authz`: the client's certificate must name exactly the allowed identity.
pub fn authorize(tls: &ServerTls, peer: Option<&[u8]>) -> Result<(), TlsError> {
    let Some(allowed) = &tls.identity else { return Ok(()) };
    let cert = peer.ok_or(TlsError::NoClientCert)?;
    let name = dn::subject(cert).unwrap_or_default();
    if &name == allowed { Ok(()) } else { Err(TlsError::Denied(name)) }
}

/// `tls-authz` with pre-shared keys: the client's username must be the allowed identity,
/// as QEMU checks it.
pub fn authorize_user(tls: &ServerTls, user: &str) -> Result<(), TlsError> {
    match &tls.identity {
        Some(allowed) if allowed != user => Err(TlsError::PskDenied(user.to_string())),
        _ => Ok(()),
    }
}
