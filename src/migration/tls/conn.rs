//! One TLS session over a connected socket, split into the two halves the migration code
//! uses: the stream's direction and the way back (the source writes the stream and reads
//! the destination's answers; the destination the reverse). Both halves share the rustls
//! state behind a mutex that is never held while waiting for the socket to bring data, so
//! a read blocked on the peer cannot stop a write.

use super::TlsError;
use std::fs::File;
use std::io::{self, Read, Write};
use std::sync::{Arc, Mutex, MutexGuard};

/// Ciphertext read from the socket at a time.
const READ_CHUNK: usize = 256 << 10;
/// Plaintext rustls takes before it is written out: a whole stream record's worth.
const WRITE_BUFFER: usize = 1 << 20;

struct Inner {
    conn: rustls::Connection,
    /// The socket, for writing.
    sock: File,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A TLS error inside an I/O error, as the stream code carries it (`InvalidData`).
#[derive(Debug)]
pub struct TlsIo(pub rustls::Error);

impl std::fmt::Display for TlsIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TLS: {}", super::describe(&self.0, None))
    }
}

impl std::error::Error for TlsIo {}

fn io_error(e: &rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsIo(e.clone()))
}

impl Inner {
    /// Writes every TLS record rustls has ready.
    fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }
}

/// The half that writes plaintext into the session.
pub struct TlsWriter {
    inner: Arc<Mutex<Inner>>,
}

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = lock(&self.inner);
        let n = inner.conn.writer().write(buf)?;
        inner.flush_tls()?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut inner = lock(&self.inner);
        inner.conn.writer().flush()?;
        inner.flush_tls()
    }
}

/// The half that reads plaintext out of the session.
pub struct TlsReader {
    inner: Arc<Mutex<Inner>>,
    /// Its own handle on the socket, read without the lock.
    sock: File,
    buf: Box<[u8]>,
    /// Ciphertext read and not yet given to rustls: `buf[start..end]`.
    start: usize,
    end: usize,
}

impl Read for TlsReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut inner = lock(&self.inner);
                match inner.conn.reader().read(out) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if self.start < self.end {
                    let mut pending = &self.buf[self.start..self.end];
                    let before = pending.len();
                    inner.conn.read_tls(&mut pending)?;
                    self.start += before - pending.len();
                    if let Err(e) = inner.conn.process_new_packets() {
                        // Tell the peer why (an alert), then fail.
                        let _ = inner.flush_tls();
                        return Err(io_error(&e));
                    }
                    // A key update may want an answer.
                    inner.flush_tls()?;
                    continue;
                }
            }
            let n = self.sock.read(&mut self.buf)?;
            (self.start, self.end) = (0, n);
            if n == 0 {
                // The end of the socket: rustls tells a clean close from a truncation.
                let mut inner = lock(&self.inner);
                inner.conn.read_tls(&mut &[][..])?;
                inner.conn.process_new_packets().map_err(|e| io_error(&e))?;
                return match inner.conn.reader().read(out) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::UnexpectedEof.into()),
                    other => other,
                };
            }
        }
    }
}

/// Drives a handshake to its end over `sock`; a failure is sent to the peer as an alert.
fn handshake(conn: &mut rustls::Connection, sock: &mut File) -> Result<(), TlsError> {
    while conn.is_handshaking() {
        match conn.complete_io(sock) {
            Ok(_) => {}
            Err(e) => {
                let tls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()).cloned();
                let _ = conn.write_tls(sock);
                return Err(match tls {
                    Some(t) => TlsError::Handshake(t),
                    None => TlsError::HandshakeIo(e),
                });
            }
        }
    }
    Ok(())
}

/// Splits a session whose handshake is done.
fn split(conn: rustls::Connection, sock: File) -> Result<(TlsReader, TlsWriter), TlsError> {
    let read_sock = sock.try_clone().map_err(TlsError::HandshakeIo)?;
    let mut conn = conn;
    conn.set_buffer_limit(Some(WRITE_BUFFER));
    let inner = Arc::new(Mutex::new(Inner { conn, sock }));
    Ok((
        TlsReader {
            inner: inner.clone(),
            sock: read_sock,
            buf: vec![0u8; READ_CHUNK].into_boxed_slice(),
            start: 0,
            end: 0,
        },
        TlsWriter { inner },
    ))
}

/// The source's side: a handshake as the client, checking the server's certificate for
/// `name`.
pub fn client(
    mut sock: File,
    config: Arc<rustls::ClientConfig>,
    name: rustls::pki_types::ServerName<'static>,
) -> Result<(TlsReader, TlsWriter), TlsError> {
    let shown = name.to_str().into_owned();
    let mut conn = rustls::Connection::from(rustls::ClientConnection::new(config, name).map_err(TlsError::Config)?);
    handshake(&mut conn, &mut sock).map_err(|e| e.for_host(&shown))?;
    split(conn, sock)
}

/// The destination's side: a handshake as the server. Returns the session and the
/// client's certificate chain (when it sent one).
pub fn server(mut sock: File, config: Arc<rustls::ServerConfig>) -> Result<(TlsReader, TlsWriter, Option<Vec<u8>>), TlsError> {
    let mut conn = rustls::Connection::from(rustls::ServerConnection::new(config).map_err(TlsError::Config)?);
    handshake(&mut conn, &mut sock)?;
    let peer = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec());
    let (r, w) = split(conn, sock)?;
    Ok((r, w, peer))
}
