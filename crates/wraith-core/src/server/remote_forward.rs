//! Remote forwards (`tcpip-forward`): listeners bound on the server that
//! belong to one session. Each accepted connection becomes a
//! `forwarded-tcpip` channel back to the client. When the session ends the
//! listeners close at once, so a reconnecting client can bind the same port.
//!
//! A port belongs to the first key that forwards it, on any address, until
//! that key's last listener on it closes: another key cannot bind the same
//! port on another address (`::1` next to `127.0.0.1`) and take its traffic.
//!
//! A request for `udp:<address>` (what wraith's client sends for
//! `--remote-forward udp:…`) binds a UDP socket instead: its datagrams ride
//! one `forwarded-tcpip` channel as udpgw frames, one flow per source.
//! TCP and UDP ports are claimed apart.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, UdpSocket};
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
    /// (protocol, port) → (owner key fingerprint, listeners it has on it).
    held: Arc<Mutex<HashMap<(Proto, u16), Holder>>>,
}

/// The key holding a port, and how many listeners it has on it.
type Holder = (String, usize);

/// What a forwarded port carries; a TCP and a UDP port of the same number
/// are different ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Proto {
    Tcp,
    Udp,
}

/// One listener's hold on a port; released on drop.
#[derive(Debug)]
struct PortClaim {
    ports: ForwardPorts,
    key: (Proto, u16),
}

impl ForwardPorts {
    /// Claim `port` for `owner`: fine if free or already `owner`'s.
    fn claim(&self, proto: Proto, port: u16, owner: &str) -> Result<PortClaim, ForwardError> {
        let mut held = self.held.lock().map_err(|_| ForwardError::PortHeld)?;
        let key = (proto, port);
        match held.get_mut(&key) {
            Some((o, n)) if o == owner => *n += 1,
            Some(_) => return Err(ForwardError::PortHeld),
            None => {
                held.insert(key, (owner.to_string(), 1));
            }
        }
        Ok(PortClaim {
            ports: self.clone(),
            key,
        })
    }
}

impl Drop for PortClaim {
    fn drop(&mut self) {
        if let Ok(mut held) = self.ports.held.lock()
            && let Some((_, n)) = held.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.key);
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
    socket: Socket,
    _claim: PortClaim,
}

/// A remote forward's bound socket.
enum Socket {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

impl Socket {
    async fn bind(proto: Proto, ip: IpAddr, port: u16) -> Result<Socket, ForwardError> {
        let bound = match proto {
            Proto::Tcp => TcpListener::bind((ip, port)).await.map(Socket::Tcp),
            Proto::Udp => UdpSocket::bind((ip, port)).await.map(Socket::Udp),
        };
        bound.map_err(|e| ForwardError::Bind(e.kind()))
    }

    fn port(&self) -> Result<u16, ForwardError> {
        let addr = match self {
            Socket::Tcp(l) => l.local_addr(),
            Socket::Udp(s) => s.local_addr(),
        };
        addr.map(|a| a.port())
            .map_err(|e| ForwardError::Bind(e.kind()))
    }
}

impl RemoteForwards {
    pub(crate) fn new(ports: ForwardPorts) -> Self {
        RemoteForwards {
            ports,
            listeners: HashMap::new(),
        }
    }

    /// Bind a listener (a socket, for UDP) on `bind_ip:port` for key
    /// `owner` and start serving it. Returns the bound port.
    pub(crate) async fn start(
        &mut self,
        proto: Proto,
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
        let (socket, claim) = if port == 0 {
            self.bind_any(proto, bind_ip, owner).await?
        } else {
            // Claim first, so the port is never bound for a squatter even
            // for a moment.
            let claim = self.ports.claim(proto, port, owner)?;
            (Socket::bind(proto, bind_ip, port).await?, claim)
        };
        let bound = u32::from(claim.key.1);
        let key = (requested_addr.to_string(), bound);
        if self.listeners.contains_key(&key) {
            return Err(ForwardError::Duplicate);
        }
        let addr = requested_addr.to_string();
        let held = Held {
            socket,
            _claim: claim,
        };
        let task = tokio::spawn(serve(held, addr, bound, handle));
        self.listeners.insert(key, task);
        Ok(bound)
    }

    /// Let the system pick a port, skipping ports another key holds.
    async fn bind_any(
        &self,
        proto: Proto,
        bind_ip: IpAddr,
        owner: &str,
    ) -> Result<(Socket, PortClaim), ForwardError> {
        let mut last = ForwardError::PortHeld;
        for _ in 0..PICK_ATTEMPTS {
            let socket = Socket::bind(proto, bind_ip, 0).await?;
            match self.ports.claim(proto, socket.port()?, owner) {
                Ok(claim) => return Ok((socket, claim)),
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

async fn serve(held: Held, addr: String, port: u32, handle: russh::server::Handle) {
    let Held { socket, _claim } = held;
    match socket {
        Socket::Tcp(mut listener) => serve_tcp(&mut listener, addr, port, handle).await,
        Socket::Udp(socket) => serve_udp(&socket, addr, port, handle).await,
    }
}

/// How long the client may take to accept a forwarded channel.
const CHANNEL_OPEN: std::time::Duration = std::time::Duration::from_secs(15);

/// Relays a remote UDP forward's socket over a channel to the client while
/// there is traffic, opening it again after it ends.
async fn serve_udp(socket: &UdpSocket, addr: String, port: u32, handle: russh::server::Handle) {
    use crate::io::udp::{PeerField, relay_on_demand};
    let open = async |src: SocketAddr| {
        let open = handle.channel_open_forwarded_tcpip(
            addr.clone(),
            port,
            src.ip().to_string(),
            u32::from(src.port()),
        );
        match tokio::time::timeout(CHANNEL_OPEN, open).await {
            Ok(Ok(c)) => Some(c.into_stream()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "client refused a forwarded udp channel");
                None
            }
            Err(_) => {
                tracing::debug!("client did not answer a forwarded udp channel");
                None
            }
        }
    };
    relay_on_demand(socket, "remote udp forward", PeerField::Source, open).await;
}

async fn serve_tcp(
    listener: &mut TcpListener,
    addr: String,
    port: u32,
    handle: russh::server::Handle,
) {
    let stop = std::future::pending();
    crate::io::accept_loop(listener, "remote forward", stop, |(stream, peer)| {
        SocketOpts::STANDARD.apply(&stream);
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
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_belongs_to_its_first_key_until_released() {
        let ports = ForwardPorts::default();
        let tcp = Proto::Tcp;
        let a1 = ports.claim(tcp, 8080, "SHA256:a").unwrap();
        let a2 = ports.claim(tcp, 8080, "SHA256:a").unwrap();
        assert!(matches!(
            ports.claim(tcp, 8080, "SHA256:b"),
            Err(ForwardError::PortHeld)
        ));
        // The UDP port of the same number is another port.
        let _b_udp = ports.claim(Proto::Udp, 8080, "SHA256:b").unwrap();
        drop(a1);
        assert!(
            ports.claim(tcp, 8080, "SHA256:b").is_err(),
            "a still holds it"
        );
        drop(a2);
        let _b = ports.claim(tcp, 8080, "SHA256:b").unwrap();
        assert!(ports.claim(tcp, 8081, "SHA256:a").is_ok());
    }
}
