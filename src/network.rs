//! The network back ends of the process (`-netdev`, `-net tap|user`, `-nic`): opened once,
//! before the first VM, and kept until exit. A reset rebuilds the VM and its NICs, not
//! the back ends: a tap's scripts run once and a tap given with `fd=` cannot be opened
//! again, and user networking keeps its connections and forwards.

use crate::config::{Config, NetdevConfig, NetdevKind};
use devices::net::NetBackend;
use devices::net::null::{Kept, NullBackend};
use devices::net::slirp::SlirpBackend;
use devices::net::tap::Tap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum NetworkError {
    /// A back end could not be opened: the option as written, then why.
    #[error("{spec}: {why}")]
    Open { spec: String, why: String },
    #[error("no network back end '{0}'")]
    Unknown(String),
}

/// One open back end.
pub struct Backend {
    pub id: String,
    /// QEMU's type name: `tap`, `user` (none for a hub's missing host network).
    pub kind: Option<&'static str>,
    handle: Arc<Mutex<Box<dyn NetBackend>>>,
    /// The link as `set_link` left it, for NICs rebuilt after a reset.
    link_up: AtomicBool,
}

impl Backend {
    /// What `info network` shows after the type (`net=10.0.2.0,restrict=off`, ...).
    pub fn info(&self) -> String {
        self.handle.lock().unwrap_or_else(|p| p.into_inner()).info()
    }

    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst)
    }

    pub fn set_link_up(&self, up: bool) {
        self.link_up.store(up, Ordering::SeqCst);
    }
}

/// Every back end, in command-line order.
#[derive(Default)]
pub struct Networks {
    backends: Vec<Backend>,
}

impl Networks {
    /// Opens every back end the configuration names. On failure the ones already open are
    /// closed again (a tap's down script runs), so nothing is left behind.
    pub fn open(cfg: &Config) -> Result<Networks, NetworkError> {
        let mut nets = Networks::default();
        for n in &cfg.netdevs {
            let (kind, backend) = open_one(n)?;
            nets.backends.push(Backend {
                id: n.id.clone(),
                kind,
                handle: Arc::new(Mutex::new(backend)),
                link_up: AtomicBool::new(true),
            });
        }
        Ok(nets)
    }

    pub fn get(&self, id: &str) -> Option<&Backend> {
        self.backends.iter().find(|b| b.id == id)
    }

    pub fn all(&self) -> &[Backend] {
        &self.backends
    }

    /// A handle on back end `id` for a new NIC.
    pub fn attach(&self, id: &str) -> Result<Box<dyn NetBackend>, NetworkError> {
        let b = self.get(id).ok_or_else(|| NetworkError::Unknown(id.to_string()))?;
        Ok(Box::new(Kept(b.handle.clone())))
    }
}

fn open_one(n: &NetdevConfig) -> Result<(Option<&'static str>, Box<dyn NetBackend>), NetworkError> {
    let failed = |why: String| NetworkError::Open { spec: n.spec.clone(), why };
    Ok(match &n.kind {
        NetdevKind::Tap(t) => (Some("tap"), Box::new(Tap::open(t).map_err(|e| failed(e.to_string()))?)),
        NetdevKind::User(u) => {
            for w in &u.warnings {
                eprintln!("godwit: warning: {}: {w}", n.spec);
            }
            (Some("user"), Box::new(SlirpBackend::new(u).map_err(|e| failed(e.to_string()))?))
        }
        NetdevKind::Null => (None, Box::new(NullBackend::new().map_err(|e| failed(e.to_string()))?)),
    })
}
