//! Remote forwards (`tcpip-forward`): listeners bound on the server that
//! belong to one session. Each accepted connection becomes a
//! `forwarded-tcpip` channel back to the client. When the session ends the
//! listeners close at once, so a reconnecting client can bind the same port.
//!
//! A port belongs to the first key that forwards it, on any address, until
//! that key's last listener on it closes: another key cannot bind the same
//! port on another address (`::1` next to `127.0.0.1`) and take its traffic.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::transport::SocketOpts;

/// Why a remote forward was not opened (for the log; never an address).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// Another key's remote forward holds the port.
    #[error("port held by another key's remote forward")]
    PortHeld,
    /// This session already forwards that address and port.
    #[error("already forwarded in this session")]
    Duplicate,
    /// Binding failed (in use by another process, no permission, ...).
    #[error("bind failed: {0}")]
    Bind(std::io::ErrorKind),
}

/// Which key holds each remote-forward port, server-wide.
#[derive(Debug, Default, Clone)]
pub(crate) struct ForwardPorts {
    /// port → (owner key fingerprint, listeners it has on the port).
    held: Arc<Mutex<HashMap<u16, (String, usize)>>>,
}

/// One listener's hold on a port; released on drop.
#[derive(Debug)]
struct PortClaim {
    ports: ForwardPorts,
    port: u16,
}

impl ForwardPorts {
    /// Claim `port` for `owner`: fine if free or already `owner`'s.
    fn claim(&self, port: u16, owner: &str) -> Result<PortClaim, ForwardError> {
        let mut held = self.held.lock().map_err(|_| ForwardError::PortHeld)?;
        match held.get_mut(&port) {
            Some((o, n)) if o == owner => *n += 1,
            Some(_) => return Err(ForwardError::PortHeld),
            None => {
                held.insert(port, (owner.to_string(), 1));
            }
        }
        Ok(PortClaim {
            ports: self.clone(),
            port,
        })
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        if let Ok(mut held) = self.ports.held.lock()
            && let Some((_, n)) = held.get_mut(&self.port)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.port);
            }
        }
    }
}

/// Tries for a server-chosen port (0) that no other key holds.
const PICK_ATTEMPTS: usize = 16;

/// The remote-forward listeners of one session, keyed by the (address, port)
/// the client asked for.
pub(crate) struct RemoteForwards {
    ports: ForwardPorts,
    listeners: HashMap<(String, u32), JoinHandle<()>>,
}

/// A bound listener and its claim on the port. Fields drop in order: the
/// socket is closed before the port is offered to other keys.
struct Held {
    listener: TcpListener,
    _claim: PortClaim,
}

impl RemoteForwards {
    pub(crate) fn new(ports: ForwardPorts) -> Self {
        RemoteForwards {
            ports,
            listeners: HashMap::new(),
        }
    }

    /// Bind a listener on `bind_ip:port` for key `owner` and start serving
    /// it. Returns the bound port.
    pub(crate) async fn start(
        &mut self,
        requested_addr: &str,
        bind_ip: IpAddr,
        port: u16,
        owner: &str,
        handle: russh::server::Handle,
    ) -> Result<u32, ForwardError> {
        if port != 0
            && self
                .listeners
                .contains_key(&(requested_addr.to_string(), port.into()))
        {
            return Err(ForwardError::Duplicate);
        }
        let (listener, claim) = if port == 0 {
            self.bind_any(bind_ip, owner).await?
        } else {
            // Claim first, so the port is never bound for a squatter even
            // for a moment.
            let claim = self.ports.claim(port, owner)?;
            let listener = TcpListener::bind((bind_ip, port))
                .await
                .map_err(|e| ForwardError::Bind(e.kind()))?;
            (listener, claim)
        };
        let bound = u32::from(claim.port);
        let key = (requested_addr.to_string(), bound);
        if self.listeners.contains_key(&key) {
            return Err(ForwardError::Duplicate);
        }
        let addr = requested_addr.to_string();
        let held = Held {
            listener,
            _claim: claim,
        };
        let task = tokio::spawn(serve(held, addr, bound, handle));
        self.listeners.insert(key, task);
        Ok(bound)
    }

    /// Let the system pick a port, skipping ports another key holds.
    async fn bind_any(
        &self,
        bind_ip: IpAddr,
        owner: &str,
    ) -> Result<(TcpListener, PortClaim), ForwardError> {
        let mut last = ForwardError::PortHeld;
        for _ in 0..PICK_ATTEMPTS {
            let listener = TcpListener::bind((bind_ip, 0))
                .await
                .map_err(|e| ForwardError::Bind(e.kind()))?;
            let port = listener
                .local_addr()
                .map_err(|e| ForwardError::Bind(e.kind()))?
                .port();
            match self.ports.claim(port, owner) {
                Ok(claim) => return Ok((listener, claim)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Stop one listener. False if there was none.
    pub(crate) fn cancel(&mut self, requested_addr: &str, port: u32) -> bool {
        match self.listeners.remove(&(requested_addr.to_string(), port)) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }
}

impl Drop for RemoteForwards {
    fn drop(&mut self) {
        for (_, task) in self.listeners.drain() {
            task.abort();
        }
    }
}

async fn serve(mut held: Held, addr: String, port: u32, handle: russh::server::Handle) {
    let stop = std::future::pending();
    crate::io::accept_loop(
        &mut held.listener,
        "remote forward",
        stop,
        |(stream, peer)| {
            SocketOpts::default().apply(&stream);
            let handle = handle.clone();
            let addr = addr.clone();
            tokio::spawn(async move {
                let originator: SocketAddr = peer;
                let channel = match handle
                    .channel_open_forwarded_tcpip(
                        addr,
                        port,
                        originator.ip().to_string(),
                        u32::from(originator.port()),
                    )
                    .await
                {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "client refused a forwarded connection");
                        return;
                    }
                };
                let mut channel = channel.into_stream();
                let mut stream = stream;
                let _ = crate::io::splice(&mut stream, &mut channel).await;
            });
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_belongs_to_its_first_key_until_released() {
        let ports = ForwardPorts::default();
        let a1 = ports.claim(8080, "SHA256:a").unwrap();
        let a2 = ports.claim(8080, "SHA256:a").unwrap();
        assert!(matches!(
            ports.claim(8080, "SHA256:b"),
            Err(ForwardError::PortHeld)
        ));
        drop(a1);
        assert!(ports.claim(8080, "SHA256:b").is_err(), "a still holds it");
        drop(a2);
        let _b = ports.claim(8080, "SHA256:b").unwrap();
        assert!(ports.claim(8081, "SHA256:a").is_ok());
    }
}
