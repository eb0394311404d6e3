//! A `tls-creds-psk` session through OpenSSL (rustls has no external pre-shared keys):
//! TLS 1.3 only, the identity the client's username, the key from `keys.psk`. OpenSSL's
//! PSK callbacks serve TLS 1.3 through its compatibility path, which binds the key to a
//! SHA-256 suite, so the suites offered are the two SHA-256 ones; the key exchange is
//! `psk_dhe_ke` (an ephemeral ECDHE share beside the key, OpenSSL's default).
//!
//! Split into the same two halves as the x509 session (`conn.rs`): OpenSSL reads its
//! records from a buffer the reading half fills from the socket without holding the
//! session's lock, so a read waiting on the peer never stops a write.

use super::TlsError;
use super::psk::Psk;
use openssl::ssl::{self, ErrorCode, Ssl, SslContext, SslMethod, SslRef, SslStream, SslVerifyMode, SslVersion};
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// The TLS 1.3 suites a PSK session may use (both hash with SHA-256).
pub const SUITES: &str = "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256";
/// Ciphertext read from the socket at a time.
const READ_CHUNK: usize = 256 << 10;

/// OpenSSL's side of the socket: while `direct` (the handshake) it reads the socket
/// itself; afterwards only what the reading half has put in `pending`.
struct Wire {
    sock: File,
    pending: Vec<u8>,
    at: usize,
    eof: bool,
    direct: bool,
}

impl Read for Wire {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.direct {
            return self.sock.read(out);
        }
        let left = &self.pending[self.at..];
        if left.is_empty() {
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = left.len().min(out.len());
        out[..n].copy_from_slice(&left[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Wire {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

type Shared = Arc<Mutex<SslStream<Wire>>>;

fn lock(m: &Mutex<SslStream<Wire>>) -> MutexGuard<'_, SslStream<Wire>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An OpenSSL failure inside an I/O error, as the stream code carries it (`InvalidData`).
#[derive(Debug)]
pub struct PskIo(pub String);

impl std::fmt::Display for PskIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", self.0)
    }
}

impl std::error::Error for PskIo {}

/// OpenSSL's reason for a failure, in words where they help.
fn reason(e: &ssl::Error) -> String {
    let why = e
        .ssl_error()
        .and_then(|s| s.errors().first())
        .and_then(|r| r.reason())
        .unwrap_or("");
    match why {
        "" => "the peer closed the connection (is tls-creds set on both sides?)".into(),
        "sslv3 alert illegal parameter"
        | "tlsv1 alert decrypt error"
        | "sslv3 alert handshake failure"
        | "tlsv1 alert unknown psk identity" => "the peer refused our pre-shared key (a different key or username there?)".into(),
        "certificate verify failed" => "the peer showed a certificate, not our pre-shared key (x509 there?)".into(),
        "no suitable signature algorithm" | "no shared cipher" => "the client offered no pre-shared key (x509 there?)".into(),
        "binder does not verify" => "the client's pre-shared key is not ours (a different key there?)".into(),
        "wrong version number" | "packet length too long" => "the peer does not speak TLS here (is tls-creds set on both sides?)".into(),
        "unexpected eof while reading" => "the peer closed the connection (is tls-creds set on both sides?)".into(),
        other => other.to_string(),
    }
}

/// A handshake failure: the socket's, or OpenSSL's in words.
fn handshake_error(e: ssl::Error) -> TlsError {
    match e.into_io_error() {
        Ok(io) => TlsError::HandshakeIo(io),
        Err(e) => TlsError::PskHandshake(reason(&e)),
    }
}

/// A failure after the handshake as an I/O error; the socket's end without the peer closing
/// the session is a truncation (`UnexpectedEof`), as with x509.
fn io_error(e: &ssl::Error, eof: bool) -> io::Error {
    match e.io_error() {
        Some(io) => io::Error::new(io.kind(), io.to_string()),
        None if eof => io::ErrorKind::UnexpectedEof.into(),
        None => io::Error::new(io::ErrorKind::InvalidData, PskIo(reason(e))),
    }
}

/// The half that writes plaintext into the session.
pub struct PskWriter {
    inner: Shared,
}

impl Write for PskWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let mut s = lock(&self.inner);
        s.ssl_write(buf).map_err(|e| io_error(&e, false))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The half that reads plaintext out of the session.
pub struct PskReader {
    inner: Shared,
    /// Its own handle on the socket, read without the lock.
    sock: File,
    buf: Box<[u8]>,
}

impl Read for PskReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut s = lock(&self.inner);
                let eof = s.get_ref().eof;
                match s.ssl_read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.code() == ErrorCode::ZERO_RETURN => return Ok(0),
                    Err(e) if e.code() == ErrorCode::WANT_READ && !eof => {}
                    Err(e) => return Err(io_error(&e, eof)),
                }
            }
            let n = self.sock.read(&mut self.buf)?;
            let mut s = lock(&self.inner);
            let w = s.get_mut();
            w.pending.drain(..w.at);
            w.at = 0;
            w.pending.extend_from_slice(&self.buf[..n]);
            w.eof = n == 0;
        }
    }
}

fn context(client: bool) -> Result<ssl::SslContextBuilder, TlsError> {
    let method = if client { SslMethod::tls_client() } else { SslMethod::tls_server() };
    let cfg = |e: openssl::error::ErrorStack| TlsError::PskConfig(e.to_string());
    let mut b = SslContext::builder(method).map_err(cfg)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3)).map_err(cfg)?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3)).map_err(cfg)?;
    b.set_ciphersuites(SUITES).map_err(cfg)?;
    b.set_num_tickets(0).map_err(cfg)?;
    if client {
        // A server that ignores the key and shows a certificate instead must not be taken
        // for the destination: with no CA to check it against, every certificate fails.
        b.set_verify(SslVerifyMode::PEER);
    }
    Ok(b)
}

/// Runs a handshake to its end on the socket, then hands the socket's reading to the
/// reading half.
fn establish(ctx: SslContext, sock: File, client: bool) -> Result<(PskReader, PskWriter), TlsError> {
    let read_sock = sock.try_clone().map_err(TlsError::HandshakeIo)?;
    let ssl = Ssl::new(&ctx).map_err(|e| TlsError::PskConfig(e.to_string()))?;
    let wire = Wire {
        sock,
        pending: Vec::new(),
        at: 0,
        eof: false,
        direct: true,
    };
    let mut s = SslStream::new(ssl, wire).map_err(|e| TlsError::PskConfig(e.to_string()))?;
    let done = if client { s.connect() } else { s.accept() };
    done.map_err(handshake_error)?;
    // The session stands on the pre-shared key, not on anything else.
    if !s.ssl().session_reused() {
        return Err(TlsError::PskHandshake("the peer did not use the pre-shared key".into()));
    }
    s.get_mut().direct = false;
    let inner = Arc::new(Mutex::new(s));
    Ok((
        PskReader {
            inner: inner.clone(),
            sock: read_sock,
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
        },
        PskWriter { inner },
    ))
}

/// Copies `what` into `into`, or fails when it does not fit.
fn put(into: &mut [u8], what: &[u8]) -> Result<usize, openssl::error::ErrorStack> {
    let dst = into.get_mut(..what.len()).ok_or_else(openssl::error::ErrorStack::get)?;
    dst.copy_from_slice(what);
    Ok(what.len())
}

/// The source's side: its username as the identity, its key.
pub fn client(sock: File, psk: &Psk) -> Result<(PskReader, PskWriter), TlsError> {
    let (user, key) = psk.keys.first().cloned().ok_or(TlsError::PskConfig("no key".into()))?;
    let mut b = context(true)?;
    b.set_psk_client_callback(move |_: &mut SslRef, _hint, identity: &mut [u8], out: &mut [u8]| {
        let mut id = user.as_bytes().to_vec();
        id.push(0);
        put(identity, &id)?;
        put(out, &key)
    });
    establish(b.build(), sock, true)
}

/// The destination's side: any username of its `keys.psk`. Returns the session and the
/// client's username; a username the file lacks fails the handshake with that cause.
pub fn server(sock: File, psk: &Psk) -> Result<(PskReader, PskWriter, String), TlsError> {
    let keys = psk.keys.clone();
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let said = seen.clone();
    let mut b = context(false)?;
    b.set_psk_server_callback(move |_: &mut SslRef, identity: Option<&[u8]>, out: &mut [u8]| {
        let name = String::from_utf8_lossy(identity.unwrap_or_default()).into_owned();
        let key = keys.iter().find(|(u, _)| *u == name).map(|(_, k)| k.clone());
        *said.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
        match key {
            Some(k) => put(out, &k),
            None => Ok(0),
        }
    });
    let user = || seen.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match establish(b.build(), sock, false) {
        Ok((r, w)) => Ok((r, w, user().unwrap_or_default())),
        Err(e) => match user() {
            Some(u) if !psk.keys.iter().any(|(k, _)| *k == u) => Err(TlsError::PskUser {
                user: u,
                path: psk.path.clone(),
            }),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Endpoint;
    use std::os::unix::net::UnixStream;

    fn keys(endpoint: Endpoint, keys: &[(&str, &[u8])]) -> Psk {
        Psk {
            endpoint,
            keys: keys.iter().map(|(u, k)| (u.to_string(), k.to_vec())).collect(),
            path: "keys.psk".into(),
        }
    }

    fn file(s: UnixStream) -> File {
        File::from(std::os::fd::OwnedFd::from(s))
    }

    /// TLS 1.3 with a SHA-256 suite, the username seen by the server, data both ways, and
    /// a truncated socket read as such.
    #[test]
    fn tls13_with_the_username_as_identity() {
        let key: &[u8] = &[7u8; 32];
        let (a, b) = UnixStream::pair().unwrap();
        let srv = keys(Endpoint::Server, &[("alice", &[1, 2]), ("qemu", key)]);
        let dest = std::thread::spawn(move || {
            let (mut r, mut w, user) = server(file(b), &srv).map_err(|e| e.to_string())?;
            let mut got = [0u8; 3];
            r.read_exact(&mut got).map_err(|e| e.to_string())?;
            w.write_all(b"pong").map_err(|e| e.to_string())?;
            Ok::<_, String>((user, got))
        });
        let (mut r, mut w) = client(file(a), &keys(Endpoint::Client, &[("qemu", key)])).unwrap();
        {
            let s = lock(&r.inner);
            assert_eq!(s.ssl().version_str(), "TLSv1.3");
            let suite = s.ssl().current_cipher().map(|c| c.name()).unwrap_or("");
            assert!(SUITES.split(':').any(|x| x == suite), "{suite}");
        }
        w.write_all(b"pin").unwrap();
        let mut got = [0u8; 4];
        r.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"pong");
        assert_eq!(dest.join().unwrap(), Ok(("qemu".to_string(), *b"pin")));
        // The server's side is gone without closing the session.
        assert_eq!(r.read(&mut got).unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
