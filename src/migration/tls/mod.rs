//! TLS for migrations, as QEMU spells it: `-object tls-creds-x509` (and `tls-creds-psk`,
//! `authz-simple`), then `migrate_set_parameter tls-creds ID` on both sides. TLS 1.3
//! through rustls (ring as the crypto provider) for x509, through OpenSSL for pre-shared
//! keys (rustls has none); godwit writes no cryptography.
//!
//! The source is the TLS client and the destination the server. Right after the
//! handshake, inside the session, the destination answers once (`GWOK`, or `GWER` and why,
//! e.g. a client `tls-authz` does not allow): the source sends nothing of the guest before
//! that answer. Everything after it (the stream and the destination's answers on the way
//! back) travels in the one session. See `docs/migration.md`.

mod conn;
mod creds;
mod dn;
mod objects;
mod psk;
mod pskconn;
mod sock;
#[cfg(test)]
mod tests;
mod verify;

pub use objects::{ClientTls, Objects, ServerCreds, ServerTls, TlsParams};

use super::disks::reply::{self, ReplyError};
use super::uri::{Accepted, Outgoing, STALL_TIMEOUT};
use std::io::{Read, Write};
use std::path::PathBuf;
use thiserror::Error;

/// Why credentials could not be loaded, or a TLS migration could not start. The texts are
/// QEMU's where QEMU has one.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("Unable to access credentials {}: {why}", path.display())]
    Access { path: PathBuf, why: String },
    #[error("Missing 'dir' property value")]
    NoDir,
    #[error("Unable to import {what} {}: {why}", path.display())]
    Import { what: &'static str, path: PathBuf, why: String },
    #[error("Cannot load certificate '{}' & key '{}': {why}", cert.display(), key.display())]
    Key { cert: PathBuf, key: PathBuf, why: String },
    #[error("The {role} certificate {} has expired", path.display())]
    Expired { role: &'static str, path: PathBuf },
    #[error("The {role} certificate {} is not yet active", path.display())]
    NotActive { role: &'static str, path: PathBuf },
    #[error("Our own certificate {} failed validation against {}: {why}", cert.display(), ca.display())]
    OwnInvalid { cert: PathBuf, ca: PathBuf, why: String },
    #[error("Username {user} not found in PSK file {}", path.display())]
    PskUser { user: String, path: PathBuf },
    #[error("TLS set-up failed: {0}")]
    Config(#[source] rustls::Error),
    #[error("No TLS credentials with id '{0}'")]
    NoCreds(String),
    #[error("Expected TLS credentials for a {0} endpoint")]
    Endpoint(&'static str),
    #[error("Cannot find authorization object '{0}'")]
    NoAuthz(String),
    #[error("No hostname for certificate validation")]
    NoHostname,
    #[error("'{0}' is not a valid TLS hostname")]
    BadHostname(String),
    /// QEMU 7.2 starts a handshake into the command, which never answers, and hangs.
    #[error("TLS is not supported for exec: migrations (tls-creds is set)")]
    Exec,
    #[error("TLS needs a socket, and the migration descriptor is a pipe")]
    NotSocket,
    #[error("TLS set-up failed: {0}")]
    PskConfig(String),
    #[error("TLS handshake failed: {0}")]
    PskHandshake(String),
    #[error("TLS PSK authz check for {0} is denied")]
    PskDenied(String),
    #[error("TLS handshake failed: {}", describe(.0, None))]
    Handshake(#[source] rustls::Error),
    #[error("Certificate does not match the hostname {0}")]
    Hostname(String),
    #[error("TLS handshake failed: {}", handshake_io(.0))]
    HandshakeIo(#[source] std::io::Error),
    #[error("TLS x509 authz check for {0} is denied")]
    Denied(String),
    #[error("TLS x509 authz check failed: the client sent no certificate")]
    NoClientCert,
    #[error("the source sent a plaintext migration stream, but tls-creds is set here")]
    Plaintext,
    /// The destination's answer to the handshake (its refusal, in its words).
    #[error(transparent)]
    Answer(#[from] ReplyError),
}

impl TlsError {
    /// A certificate that does not name the host dialled, in QEMU's words.
    fn for_host(self, host: &str) -> TlsError {
        use rustls::CertificateError as C;
        match self {
            TlsError::Handshake(rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
                TlsError::Hostname(host.to_string())
            }
            other => other,
        }
    }
}

fn handshake_io(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    match e.kind() {
        UnexpectedEof | ConnectionReset | BrokenPipe => "the peer closed the connection (is tls-creds set on both sides?)".into(),
        WouldBlock | TimedOut => format!("no answer within {} s", STALL_TIMEOUT.as_secs()),
        _ => crate::errtext::io(e),
    }
}

/// A rustls error in words: QEMU's (GnuTLS's) for certificate checks, and what an alert
/// from the peer means.
pub fn describe(e: &rustls::Error, host: Option<&str>) -> String {
    use rustls::AlertDescription as A;
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => "The certificate hasn't got a known issuer".into(),
            C::NotValidForName | C::NotValidForNameContext { .. } => match host {
                Some(h) => format!("Certificate does not match the hostname {h}"),
                None => "Certificate does not match the hostname".into(),
            },
            C::Expired | C::ExpiredContext { .. } => "The certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => "The certificate is not yet activated".into(),
            C::Revoked => "The certificate has been revoked".into(),
            C::BadSignature => "The certificate is not trusted".into(),
            other => format!("The certificate is not valid: {other:?}"),
        },
        rustls::Error::NoCertificatesPresented => "No certificate was found".into(),
        rustls::Error::AlertReceived(a) => match a {
            A::UnknownCA => "the peer does not know our certificate's issuer".into(),
            A::BadCertificate => "the peer refused our certificate".into(),
            A::CertificateExpired => "the peer found our certificate expired".into(),
            A::CertificateRequired => "the peer requires a certificate (the client has none)".into(),
            A::AccessDenied => "the peer denied access".into(),
            A::DecodeError | A::UnexpectedMessage => "the peer does not speak TLS here (is tls-creds set on both sides?)".into(),
            other => format!("the peer sent the alert {other:?}"),
        },
        rustls::Error::InvalidMessage(_) => "the peer does not speak TLS (is tls-creds set on both sides?)".into(),
        other => other.to_string(),
    }
}

/// The source's connection, made a TLS session: the handshake, then the destination's
/// answer to it, before anything of the guest is sent.
pub fn connect(out: Outgoing, tls: &ClientTls) -> Result<Outgoing, TlsError> {
    let sock = out.socket.ok_or(TlsError::NotSocket)?;
    let (mut reader, writer): (Box<dyn Read + Send>, Box<dyn Write + Send>) = match tls {
        ClientTls::X509 { config, name } => {
            let (r, w) = conn::client(sock, config.clone(), name.clone())?;
            (Box::new(r), Box::new(w))
        }
        ClientTls::Psk(psk) => {
            let (r, w) = pskconn::client(sock, psk)?;
            (Box::new(r), Box::new(w))
        }
    };
    reply::answer(&mut reader).map_err(late_refusal)?;
    Ok(Outgoing {
        writer,
        reply: Some(reader),
        abort: out.abort,
        child: None,
        socket: None,
    })
}

/// In TLS 1.3 the client's handshake ends before the server has judged the client's
/// certificate: a refusal (an alert) arrives in place of the answer. It is the handshake's.
fn late_refusal(e: ReplyError) -> TlsError {
    match e {
        ReplyError::NoAnswer(io) => {
            if let Some(t) = io.get_ref().and_then(|i| i.downcast_ref::<conn::TlsIo>()) {
                return TlsError::Handshake(t.0.clone());
            }
            match io.get_ref().and_then(|i| i.downcast_ref::<pskconn::PskIo>()) {
                Some(t) => TlsError::PskHandshake(t.0.clone()),
                None => TlsError::Answer(ReplyError::NoAnswer(io)),
            }
        }
        other => TlsError::Answer(other),
    }
}

/// The destination's connection, made a TLS session: the handshake (within the stall
/// timeout), the client checked against `tls-authz`, and the answer to the source.
pub fn accept(a: Accepted, tls: &ServerTls) -> Result<Accepted, TlsError> {
    let sock = a.socket.ok_or(TlsError::NotSocket)?;
    drop((a.input, a.reply));
    crate::migration::uri::set_read_timeout(&sock, Some(STALL_TIMEOUT));
    if sock::plaintext_stream(&sock) {
        // A godwit source without TLS: tell it why before closing (it reads this when its
        // next write fails), as a destination that gives up on a stream does.
        let _ = reply::send(&mut &sock, &Err::<(), _>(TlsError::Plaintext));
        return Err(TlsError::Plaintext);
    }
    let session = sock.try_clone().map_err(TlsError::HandshakeIo)?;
    let (reader, mut writer, verdict): (Box<dyn Read + Send>, Box<dyn Write + Send>, _) = match &tls.creds {
        ServerCreds::X509(config) => {
            let (r, w, peer) = conn::server(session, config.clone())?;
            (Box::new(r), Box::new(w), objects::authorize(tls, peer.as_deref()))
        }
        ServerCreds::Psk(psk) => {
            let (r, w, user) = pskconn::server(session, psk)?;
            (Box::new(r), Box::new(w), objects::authorize_user(tls, &user))
        }
    };
    let told = reply::send(&mut writer, &verdict);
    verdict?;
    told.map_err(TlsError::HandshakeIo)?;
    crate::migration::uri::set_read_timeout(&sock, None);
    Ok(Accepted {
        input: reader,
        reply: Some(writer),
        socket: None,
    })
}
