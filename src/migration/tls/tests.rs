//! Whole sessions in one process over a socket pair: the handshake, the answer, data both
//! ways; and each bad case with the words both sides say.

#[path = "../../../tests/common/certs.rs"]
mod certs;

use super::*;
use crate::config::{Endpoint, ObjectConfig, ObjectKind};
use certs::{CLIENT_DN, Ca};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

/// A fresh directory for one test's credentials, removed when the test ends, pass or fail.
fn tmp(name: &str) -> vmm_sys_util::tempdir::TempDir {
    let prefix = std::env::temp_dir().join(format!("godwit-tls-{name}-"));
    vmm_sys_util::tempdir::TempDir::new_with_prefix(prefix).unwrap()
}

fn x509(id: &str, dir: &Path, endpoint: Endpoint, sanity_check: bool) -> ObjectConfig {
    ObjectConfig {
        id: id.into(),
        kind: ObjectKind::TlsCredsX509 {
            dir: Some(dir.to_path_buf()),
            endpoint,
            verify_peer: true,
            sanity_check,
        },
        spec: String::new(),
    }
}

fn authz(id: &str, identity: &str) -> ObjectConfig {
    ObjectConfig {
        id: id.into(),
        kind: ObjectKind::AuthzSimple { identity: identity.into() },
        spec: String::new(),
    }
}

fn params<'a>(creds: &'a str, hostname: &'a str, authz: &'a str) -> TlsParams<'a> {
    TlsParams { creds, hostname, authz }
}

/// Runs a session: the source's end in this thread, the destination's in another.
/// Returns what each side said.
fn session(client: &ClientTls, server: &ServerTls) -> (Result<String, String>, Result<String, String>) {
    let (a, b) = UnixStream::pair().unwrap();
    let server = server.clone();
    let dest = std::thread::spawn(move || {
        let acc = Accepted {
            input: Box::new(b.try_clone().unwrap()),
            reply: None,
            socket: Some(std::fs::File::from(std::os::fd::OwnedFd::from(b))),
        };
        let mut a = accept(acc, &server).map_err(|e| e.to_string())?;
        let mut got = [0u8; 5];
        a.input.read_exact(&mut got).map_err(|e| e.to_string())?;
        a.reply.as_mut().unwrap().write_all(b"world").map_err(|e| e.to_string())?;
        a.reply.as_mut().unwrap().flush().map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    });
    let out = Outgoing {
        writer: Box::new(a.try_clone().unwrap()),
        reply: None,
        abort: Box::new(|| {}),
        child: None,
        socket: Some(std::fs::File::from(std::os::fd::OwnedFd::from(a))),
    };
    let src = connect(out, client).map_err(|e| e.to_string()).and_then(|mut o| {
        o.writer.write_all(b"hello").map_err(|e| e.to_string())?;
        o.writer.flush().map_err(|e| e.to_string())?;
        let mut got = [0u8; 5];
        o.reply.as_mut().unwrap().read_exact(&mut got).map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&got).into_owned())
    });
    (src, dest.join().unwrap())
}

struct Setup {
    objects: Objects,
}

impl Setup {
    fn new(name: &str, server_ca: &Ca, server_dir_ca: &Ca, client_ca: &Ca, expired: bool, extra: Vec<ObjectConfig>) -> Self {
        let d_dir = tmp(name);
        let d = d_dir.as_path();
        let server = server_ca.server(&["localhost", "127.0.0.1"], expired);
        certs::write(&d.join("s"), server_dir_ca, "server", Some(&server));
        certs::write(&d.join("c"), client_ca, "client", Some(&client_ca.client(None)));
        let mut objs = vec![
            x509("srv", &d.join("s"), Endpoint::Server, !expired),
            x509("cli", &d.join("c"), Endpoint::Client, true),
        ];
        objs.extend(extra);
        Setup {
            objects: Objects::load(&objs).unwrap(),
        }
    }

    fn run(&self, hostname: &str, authz: &str) -> (Result<String, String>, Result<String, String>) {
        let c = self
            .objects
            .client(&params("cli", hostname, ""), Some("127.0.0.1"))
            .unwrap()
            .unwrap();
        let s = self.objects.server(&params("srv", "", authz)).unwrap().unwrap();
        session(&c, &s)
    }
}

#[test]
fn a_session_carries_both_ways_and_authz_lets_the_named_client_in() {
    let ca = Ca::new("CA");
    let s = Setup::new(
        "good",
        &ca,
        &ca,
        &ca,
        false,
        vec![authz("auth0", CLIENT_DN), authz("nobody", "CN=nobody")],
    );
    assert_eq!(s.run("", ""), (Ok("world".into()), Ok("hello".into())));
    assert_eq!(s.run("localhost", "auth0"), (Ok("world".into()), Ok("hello".into())));
    let (src, dst) = s.run("", "nobody");
    let denied = format!("TLS x509 authz check for {CLIENT_DN} is denied");
    assert_eq!(dst.unwrap_err(), denied);
    assert_eq!(src.unwrap_err(), format!("the destination refused: {denied}"));
}

#[test]
fn hostname_and_ca_mismatches_fail_on_both_sides() {
    let ca = Ca::new("CA");
    let s = Setup::new("host", &ca, &ca, &ca, false, vec![]);
    let (src, dst) = s.run("bogus.example.com", "");
    assert_eq!(src.unwrap_err(), "Certificate does not match the hostname bogus.example.com");
    assert!(
        dst.unwrap_err()
            .starts_with("TLS handshake failed: the peer refused our certificate")
    );
    // The client trusts another CA than the one that signed the server's certificate.
    let other = Ca::new("Other CA");
    let s = Setup::new("ca", &ca, &ca, &other, false, vec![]);
    let (src, dst) = s.run("", "");
    assert_eq!(src.unwrap_err(), "TLS handshake failed: The certificate hasn't got a known issuer");
    assert!(dst.unwrap_err().starts_with("TLS handshake failed: the peer"));
}

#[test]
fn an_expired_certificate_is_refused_at_load_and_in_the_handshake() {
    let ca = Ca::new("CA");
    let d_dir = tmp("expired");
    let d = d_dir.as_path();
    certs::write(d, &ca, "server", Some(&ca.server(&["localhost"], true)));
    let e = Objects::load(&[x509("srv", d, Endpoint::Server, true)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("The server certificate {}/server-cert.pem has expired", d.display())
    );
    // With QEMU's sanity check off it loads, and the client refuses it.
    let s = Setup::new("expired2", &ca, &ca, &ca, true, vec![]);
    let (src, _) = s.run("", "");
    assert_eq!(src.unwrap_err(), "TLS handshake failed: The certificate has expired");
}

#[test]
fn credential_files_are_checked_at_load_with_qemus_words() {
    let ca = Ca::new("CA");
    let other = Ca::new("Other CA");
    let d_dir = tmp("files");
    let d = d_dir.as_path();
    let e = Objects::load(&[x509("srv", d, Endpoint::Server, true)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Unable to access credentials {}/ca-cert.pem: No such file or directory",
            d.display()
        )
    );
    certs::write(d, &other, "server", Some(&ca.server(&["localhost"], false)));
    let e = Objects::load(&[x509("srv", d, Endpoint::Server, true)]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "Our own certificate {0}/server-cert.pem failed validation against {0}/ca-cert.pem: The certificate hasn't got a known issuer",
            d.display()
        )
    );
    std::fs::write(d.join("server-cert.pem"), "junk\n").unwrap();
    let e = Objects::load(&[x509("srv", d, Endpoint::Server, true)]).unwrap_err();
    assert!(e.to_string().starts_with("Unable to import server certificate"), "{e}");
    // A client needs only the CA.
    let c_dir = tmp("clientonly");
    let c = c_dir.as_path();
    certs::write(c, &ca, "client", None);
    let objs = Objects::load(&[x509("cli", c, Endpoint::Client, true)]).unwrap();
    assert!(objs.client(&params("cli", "", ""), Some("h")).is_ok());
}

#[test]
fn parameters_resolve_as_qemu_resolves_them() {
    let ca = Ca::new("CA");
    let s = Setup::new("params", &ca, &ca, &ca, false, vec![]);
    let o = &s.objects;
    assert!(o.client(&params("", "", ""), None).unwrap().is_none());
    assert_eq!(
        o.client(&params("nosuch", "", ""), None).unwrap_err().to_string(),
        "No TLS credentials with id 'nosuch'"
    );
    assert_eq!(
        o.client(&params("srv", "", ""), Some("h")).unwrap_err().to_string(),
        "Expected TLS credentials for a client endpoint"
    );
    assert_eq!(
        o.server(&params("cli", "", "")).unwrap_err().to_string(),
        "Expected TLS credentials for a server endpoint"
    );
    assert_eq!(
        o.client(&params("cli", "", ""), None).unwrap_err().to_string(),
        "No hostname for certificate validation"
    );
    assert!(o.client(&params("cli", "dest.example.com", ""), None).unwrap().is_some());
    assert_eq!(
        o.server(&params("srv", "", "nosuch")).unwrap_err().to_string(),
        "Cannot find authorization object 'nosuch'"
    );
}

#[test]
fn a_plaintext_source_is_told_why() {
    let ca = Ca::new("CA");
    let s = Setup::new("plain", &ca, &ca, &ca, false, vec![]);
    let srv = s.objects.server(&params("srv", "", "")).unwrap().unwrap();
    let (mut a, b) = UnixStream::pair().unwrap();
    a.write_all(b"GODWITMG\x04\0\0\0\0\0\0\0").unwrap();
    let acc = Accepted {
        input: Box::new(b.try_clone().unwrap()),
        reply: None,
        socket: Some(std::fs::File::from(std::os::fd::OwnedFd::from(b))),
    };
    let e = accept(acc, &srv).err().unwrap();
    assert_eq!(
        e.to_string(),
        "the source sent a plaintext migration stream, but tls-creds is set here"
    );
    let why = crate::migration::disks::reply::answer(&mut a).unwrap_err();
    assert_eq!(why.to_string(), format!("the destination refused: {e}"));
}

fn psk(id: &str, dir: &Path, endpoint: Endpoint, username: &str) -> ObjectConfig {
    ObjectConfig {
        id: id.into(),
        kind: ObjectKind::TlsCredsPsk {
            dir: Some(dir.to_path_buf()),
            endpoint,
            username: username.into(),
        },
        spec: String::new(),
    }
}

/// A PSK source and destination whose `keys.psk` files are `client` and `server`.
fn psk_run(name: &str, client: &str, server: &str, user: &str, authz_id: &str) -> (Result<String, String>, Result<String, String>) {
    let d_dir = tmp(name);
    let d = d_dir.as_path();
    let (c, s) = (d.join("c"), d.join("s"));
    for (dir, keys) in [(&c, client), (&s, server)] {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("keys.psk"), keys).unwrap();
    }
    let objs = Objects::load(&[
        psk("cli", &c, Endpoint::Client, user),
        psk("srv", &s, Endpoint::Server, "qemu"),
        authz("bob", "bob"),
    ])
    .unwrap();
    let cl = objs.client(&params("cli", "", ""), None).unwrap().unwrap();
    let sv = objs.server(&params("srv", "", authz_id)).unwrap().unwrap();
    session(&cl, &sv)
}

const KEY: &str = "qemu:0123456789abcdef0123456789abcdef\n";

#[test]
fn a_psk_session_carries_both_ways() {
    let (src, dst) = psk_run("psk-good", KEY, &format!("alice:00ff\n{KEY}"), "qemu", "");
    assert_eq!((src, dst), (Ok("world".into()), Ok("hello".into())));
}

#[test]
fn psk_mismatches_fail_on_both_sides() {
    let (src, dst) = psk_run("psk-key", "qemu:00112233\n", KEY, "qemu", "");
    assert_eq!(
        src.unwrap_err(),
        "TLS handshake failed: the peer refused our pre-shared key (a different key or username there?)"
    );
    assert_eq!(
        dst.unwrap_err(),
        "TLS handshake failed: the client's pre-shared key is not ours (a different key there?)"
    );
    let (src, dst) = psk_run("psk-user", "bob:00112233\n", KEY, "bob", "");
    assert_eq!(
        src.unwrap_err(),
        "TLS handshake failed: the peer refused our pre-shared key (a different key or username there?)"
    );
    let e = dst.unwrap_err();
    assert!(
        e.starts_with("Username bob not found in PSK file ") && e.ends_with("/s/keys.psk"),
        "{e}"
    );
    // tls-authz names the one username let in.
    let (src, dst) = psk_run("psk-authz", KEY, KEY, "qemu", "bob");
    assert_eq!(dst.unwrap_err(), "TLS PSK authz check for qemu is denied");
    assert_eq!(src.unwrap_err(), "the destination refused: TLS PSK authz check for qemu is denied");
}

/// A PSK source never takes an x509 destination for its peer, nor the reverse.
#[test]
fn psk_and_x509_do_not_mix() {
    let ca = Ca::new("CA");
    let s = Setup::new("mix", &ca, &ca, &ca, false, vec![]);
    let d_dir = tmp("mix-psk");
    let d = d_dir.as_path();
    std::fs::write(d.join("keys.psk"), KEY).unwrap();
    let p = Objects::load(&[psk("cli", d, Endpoint::Client, "qemu"), psk("srv", d, Endpoint::Server, "qemu")]).unwrap();
    let (pc, ps) = (
        p.client(&params("cli", "", ""), None).unwrap().unwrap(),
        p.server(&params("srv", "", "")).unwrap().unwrap(),
    );
    let xc = s.objects.client(&params("cli", "", ""), Some("127.0.0.1")).unwrap().unwrap();
    let xs = s.objects.server(&params("srv", "", "")).unwrap().unwrap();
    let (src, dst) = session(&pc, &xs);
    let h = "TLS handshake failed:";
    assert_eq!(
        src.unwrap_err(),
        format!("{h} the peer showed a certificate, not our pre-shared key (x509 there?)")
    );
    assert_eq!(dst.unwrap_err(), format!("{h} the peer does not know our certificate's issuer"));
    let (src, dst) = session(&xc, &ps);
    assert_eq!(src.unwrap_err(), format!("{h} the peer sent the alert HandshakeFailure"));
    assert_eq!(dst.unwrap_err(), format!("{h} the client offered no pre-shared key (x509 there?)"));
}
