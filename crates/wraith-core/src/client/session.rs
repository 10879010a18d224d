//! One SSH session to the server: dial the transport, handshake, check the
//! host key, authenticate. The russh client handler also serves
//! `forwarded-tcpip` channels the server opens for remote forwards.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use russh::client::{Handle, Msg, Session};
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh::{Channel, ChannelOpenFailure};
use tokio::sync::watch;

use super::host_key::{self, HostKeyPolicy};
use crate::error::{Error, Reason, Result};
use crate::keys::fingerprint;
use crate::transport::{BoxFuture, BoxStream};

/// Where the channels the server opens (remote forwards) go. The session
/// asks; the client's remote-forward table answers. Keeping this a trait
/// keeps the session free of the forward code (which opens channels
/// through the session).
pub(crate) trait InboundRoutes: Send + Sync + 'static {
    /// A connection to the local target of a channel the server opened to
    /// `address:port`, or `None` to refuse the channel. The error names
    /// the target (it is the client's own, never logged by a server).
    fn connect(
        &self,
        address: &str,
        port: u32,
    ) -> Option<BoxFuture<'static, std::result::Result<BoxStream, String>>>;
}

/// No remote forwards: every channel the server opens is refused.
pub(crate) struct NoInboundRoutes;

impl InboundRoutes for NoInboundRoutes {
    fn connect(
        &self,
        _address: &str,
        _port: u32,
    ) -> Option<BoxFuture<'static, std::result::Result<BoxStream, String>>> {
        None
    }
}

/// A live, authenticated session.
pub(crate) type SessionHandle = Arc<Handle<ClientHandler>>;

/// What a session needs to start.
pub(crate) struct SessionParams {
    /// The servers, in order of preference (at least one).
    pub(crate) servers: Vec<super::ServerEndpoint>,
    pub(crate) user: String,
    pub(crate) identity: Arc<PrivateKey>,
    pub(crate) certificate: Option<russh::keys::Certificate>,
    pub(crate) host_key: HostKeyPolicy,
    pub(crate) config: Arc<russh::client::Config>,
    pub(crate) connect_timeout: Duration,
    pub(crate) remote_forwards: Arc<dyn InboundRoutes>,
}

impl SessionParams {
    /// What every session of `opts` needs, for [`Client`](super::Client)
    /// and for single-channel connections alike.
    pub(crate) fn new(
        opts: &super::ConnectOptions,
        remote_forwards: Arc<dyn InboundRoutes>,
    ) -> Self {
        let mut servers = vec![super::ServerEndpoint {
            transport: opts.transport.clone(),
            host: opts.server_host.clone(),
            port: opts.server_port,
        }];
        servers.extend(opts.fallback_servers.iter().cloned());
        SessionParams {
            servers,
            user: opts.user.clone(),
            identity: Arc::new(opts.identity.clone()),
            certificate: opts.certificate.clone(),
            host_key: opts.host_key.clone(),
            config: super::ssh_config(opts),
            connect_timeout: opts.connect_timeout,
            remote_forwards,
        }
    }
}

pub(crate) struct ClientHandler {
    host_key: HostKeyPolicy,
    host: String,
    port: u16,
    /// Why the host key was refused, for the error message.
    host_key_error: Arc<Mutex<Option<String>>>,
    remote_forwards: Arc<dyn InboundRoutes>,
    /// Dropped with the handler, i.e. when the session task ends.
    _alive: watch::Sender<()>,
    disconnect_reason: Arc<Mutex<Option<String>>>,
}

/// Signals the end of a session and why.
pub(crate) struct SessionEnd {
    alive: watch::Receiver<()>,
    reason: Arc<Mutex<Option<String>>>,
}

impl SessionEnd {
    /// Resolve when the session is over, with the reason if one is known.
    pub(crate) async fn wait(mut self) -> String {
        while self.alive.changed().await.is_ok() {}
        self.reason
            .lock()
            .ok()
            .and_then(|mut r| r.take())
            .unwrap_or_else(|| "connection closed".into())
    }
}

impl russh::client::Handler for ClientHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                host_key::verify(&self.host_key, &self.host, self.port, key)
            }
            // We offer no certificate host key algorithm, so a certificate
            // here is a server that ignored the negotiation.
            PublicKeyOrCertificate::Certificate(_) => Err(
                "the server presented a host certificate; wraith accepts only plain Ed25519 host keys"
                    .to_string(),
            ),
        };
        match verdict {
            Ok(()) => Ok(true),
            Err(reason) => {
                if let Ok(mut slot) = self.host_key_error.lock() {
                    *slot = Some(reason);
                }
                Ok(false)
            }
        }
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: russh::client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let Some(local) = self
            .remote_forwards
            .connect(connected_address, connected_port)
        else {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        };
        tokio::spawn(async move {
            match local.await {
                Ok(mut local) => {
                    reply.accept().await;
                    let mut channel = channel.into_stream();
                    let _ = crate::io::splice(&mut local, &mut channel).await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "remote forward: cannot reach the local target");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                }
            }
        });
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: russh::client::DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            russh::client::DisconnectReason::ReceivedDisconnect(info) => {
                format!("server disconnected: {}", info.message)
            }
            russh::client::DisconnectReason::Error(e) => e.to_string(),
        };
        if let Ok(mut slot) = self.disconnect_reason.lock() {
            slot.get_or_insert(text);
        }
        match reason {
            russh::client::DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            russh::client::DisconnectReason::Error(e) => Err(e),
        }
    }
}

/// A session to the first of the servers that takes one, trying them in
/// order from `start` (wrapping around). Returns it with its end signal and
/// the index of the server. With one server its error is returned as is;
/// with several, each failure is logged and the next server tried, and when
/// none works the error is fatal only if every server's was (a host key
/// that does not match skips that server, it never trusts it).
pub(crate) async fn establish(
    p: &SessionParams,
    start: usize,
) -> Result<(SessionHandle, SessionEnd, usize)> {
    let n = p.servers.len();
    let mut fatal = None;
    let mut passing = None;
    for k in 0..n {
        let i = (start + k) % n;
        match establish_with(p, &p.servers[i]).await {
            Ok((handle, end)) => return Ok((handle, end, i)),
            Err(e) if n == 1 => return Err(e),
            Err(e) => {
                tracing::warn!("{e}; trying the next server");
                if e.is_fatal() {
                    fatal.get_or_insert(e);
                } else {
                    passing = Some(e);
                }
            }
        }
    }
    Err(passing
        .or(fatal)
        .unwrap_or_else(|| Error::Usage("no server to connect to".into())))
}

/// Dial, handshake and authenticate with one server.
async fn establish_with(
    p: &SessionParams,
    target: &super::ServerEndpoint,
) -> Result<(SessionHandle, SessionEnd)> {
    let server = target.transport.describe();
    let timeout = p.connect_timeout;
    let stream = tokio::time::timeout(timeout, target.transport.connect())
        .await
        .map_err(|_| Error::Transport {
            server: server.clone(),
            reason: format!("timed out after {}s", timeout.as_secs()).into(),
        })??;
    let stream = crate::io::read_ahead::read_ahead(stream);

    let host_key_error = Arc::new(Mutex::new(None));
    let disconnect_reason = Arc::new(Mutex::new(None));
    let (alive_tx, alive_rx) = watch::channel(());
    let handler = ClientHandler {
        host_key: p.host_key.clone(),
        host: target.host.clone(),
        port: target.port,
        host_key_error: host_key_error.clone(),
        remote_forwards: p.remote_forwards.clone(),
        _alive: alive_tx,
        disconnect_reason: disconnect_reason.clone(),
    };
    let handshake = russh::client::connect_stream(p.config.clone(), stream, handler);
    let mut handle = match tokio::time::timeout(timeout, handshake).await {
        Err(_) => {
            return Err(Error::Ssh {
                server,
                reason: format!("handshake timed out after {}s", timeout.as_secs()).into(),
            });
        }
        Ok(Err(e)) => {
            let hk = host_key_error.lock().ok().and_then(|mut s| s.take());
            return Err(match hk {
                Some(reason) => Error::HostKey { server, reason },
                None => Error::Ssh {
                    server,
                    reason: Reason::with_source(describe_ssh_error(&e), e),
                },
            });
        }
        Ok(Ok(h)) => h,
    };

    let auth_timeout = |e: &str| Error::Ssh {
        server: server.clone(),
        reason: format!("authentication {e}").into(),
    };
    let mut accepted = false;
    if let Some(cert) = &p.certificate {
        // Present the certificate first, like OpenSSH; fall back to the
        // plain key if the server does not take it.
        let r = tokio::time::timeout(
            timeout,
            handle.authenticate_openssh_cert(p.user.clone(), p.identity.clone(), cert.clone()),
        )
        .await
        .map_err(|_| auth_timeout("timed out"))?
        .map_err(|e| auth_timeout(&describe_ssh_error(&e)))?;
        accepted = r.success();
    }
    if !accepted {
        let key = PrivateKeyWithHashAlg::new(p.identity.clone(), None);
        let r = tokio::time::timeout(timeout, handle.authenticate_publickey(p.user.clone(), key))
            .await
            .map_err(|_| auth_timeout("timed out"))?
            .map_err(|e| auth_timeout(&describe_ssh_error(&e)))?;
        accepted = r.success();
    }
    if !accepted {
        return Err(Error::AuthRejected {
            user: p.user.clone(),
            server,
            fingerprint: fingerprint(p.identity.public_key()),
        });
    }
    let end = SessionEnd {
        alive: alive_rx,
        reason: disconnect_reason,
    };
    Ok((Arc::new(handle), end))
}

fn describe_ssh_error(e: &russh::Error) -> String {
    match e {
        russh::Error::NoCommonAlgo { kind, ours, theirs } => format!(
            "no common {kind:?} algorithm (we offer {}; the server offers {})",
            ours.join(","),
            theirs.join(",")
        ),
        russh::Error::Disconnect => "the server closed the connection".into(),
        russh::Error::IO(io) => format!("connection failed: {io}"),
        other => other.to_string(),
    }
}
