//! Node.js bindings for wraith (napi-rs). The JavaScript layer in
//! `index.js` wraps these native objects into a `stream.Duplex`, a server
//! object and an EventTarget adapter; this file only moves bytes and maps
//! options onto wraith-core's.
//!
//! Every russh channel lives on napi's tokio runtime and is dropped there:
//! a `ChannelStream` dropped outside a runtime panics (see NOTES.md).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Either};
use napi::{Error, Result, Status};
use napi_derive::napi;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, oneshot};

use wraith_core::Source;
use wraith_core::client::{open_channel, split_host_port};
use wraith_core::profile::{ClientProfile, Naming, ServerProfile};
use wraith_core::server::{ControlInfo, ControlStream, EventHub, NatsHubOptions, Server};
use wraith_core::transport::{
    Acceptor, ClientTransportOptions, ProxyUrl, ServerTransportOptions, TransportKind,
};

type Io = Box<dyn IoStream>;
trait IoStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> IoStream for T {}

/// A JavaScript `Error` with wraith's own message, naming options as this
/// addon spells them (`tlsPin` where the CLI says `--tls-pin`).
fn js_err(e: impl std::fmt::Display) -> Error {
    Error::new(
        Status::GenericFailure,
        Naming::Options.render(&e.to_string()),
    )
}

/// A key or certificate given as a file path or as the file's contents.
type KeySource = Either<String, Buffer>;

fn source(src: &KeySource) -> Source {
    match src {
        Either::A(path) => Source::File(path.into()),
        Either::B(bytes) => Source::Bytes(bytes.to_vec()),
    }
}

/// The transport named by `transport` (default tcp).
fn transport_kind(name: Option<&str>) -> Result<TransportKind> {
    name.unwrap_or("tcp")
        .parse::<TransportKind>()
        .map_err(js_err)
}

/// Options of `connect()`.
#[napi(object)]
pub struct ConnectOpts {
    /// `host[:port]` of the server (port 22, or 443 with tls, if omitted),
    /// or a list of servers tried in order, each `host[:port]` or with its
    /// own transport (`tls://…`, `iroh:<ticket>`), as `--server` takes them.
    pub server: Option<Either<String, Vec<String>>>,
    /// iroh: the server's ticket (or endpoint id), as `serve()` reports it.
    pub peer: Option<String>,
    /// Private key: a file path or the file's contents.
    pub identity: Either<String, Buffer>,
    /// OpenSSH user certificate for `identity` (path or contents); default
    /// `<identity>-cert.pub` when `identity` is a path and that file exists.
    pub certificate: Option<Either<String, Buffer>>,
    /// Passphrase of an encrypted `identity`.
    pub passphrase: Option<String>,
    /// Pinned host key: `SHA256:…`, a public key line, or a `.pub` path.
    pub host_key: Option<String>,
    /// An OpenSSH known_hosts file the host key must be listed in.
    pub known_hosts: Option<String>,
    /// Login name (default: `$USER`, else the user running node).
    pub user: Option<String>,
    /// `host:port` to reach from the server; default `wraith-control:0`.
    pub target: Option<String>,
    /// `tcp` (default), `tls`, `ws`, `wss` or `iroh`.
    pub transport: Option<String>,
    /// ws, wss: the path of the WebSocket upgrade (default `/`).
    pub ws_path: Option<String>,
    /// ws, wss: the Host header, when it is not the server's name.
    pub ws_host: Option<String>,
    /// tls: SNI and the name the certificate must match.
    pub tls_server_name: Option<String>,
    /// tls: trust only these CA certificates (PEM path or contents).
    pub tls_ca: Option<Either<String, Buffer>>,
    /// tls: accept only this certificate key, `sha256/<base64>`.
    pub tls_pin: Option<String>,
    /// tls: do not check the certificate (the host key still is).
    pub insecure: Option<bool>,
    /// iroh: relay URL, `default` or `disabled`.
    pub iroh_relay: Option<String>,
    /// Reach the server through `socks5://…` or `http://…`.
    pub proxy: Option<String>,
    /// Seconds for dial, handshake and authentication (default 15).
    pub connect_timeout: Option<u32>,
}

/// One SSH channel as a byte stream.
#[napi]
pub struct NativeStream {
    rd: Arc<Mutex<Option<ReadHalf<Io>>>>,
    wr: Arc<Mutex<Option<WriteHalf<Io>>>>,
    /// The runtime the channel lives on. napi's own runtime accessors
    /// panic once node has begun tearing the environment down, which is
    /// exactly when finalizers run; a handle keeps working (spawning on a
    /// stopped runtime just cancels the task).
    runtime: tokio::runtime::Handle,
    /// Who opened it, for streams handed out by `serve()`.
    info: Option<ControlInfo>,
    /// A read error met after bytes that were returned first; the next
    /// `read()` reports it.
    read_error: std::sync::Mutex<Option<std::io::Error>>,
}

impl NativeStream {
    fn new(io: Io) -> Self {
        let (rd, wr) = tokio::io::split(io);
        NativeStream {
            rd: Arc::new(Mutex::new(Some(rd))),
            wr: Arc::new(Mutex::new(Some(wr))),
            runtime: tokio::runtime::Handle::current(),
            info: None,
            read_error: std::sync::Mutex::new(None),
        }
    }

    /// Drop both halves on the runtime (russh needs one to close).
    fn release(&self) {
        let rd = self.rd.clone();
        let wr = self.wr.clone();
        let runtime = self.runtime.clone();
        // Never unwind into node (this runs from finalizers too).
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _enter = runtime.enter();
            runtime.spawn(async move {
                rd.lock().await.take();
                wr.lock().await.take();
            });
        }));
    }
}

impl Drop for NativeStream {
    fn drop(&mut self) {
        // Runs from a finalizer, possibly while node tears the environment
        // down. Take the halves out and drop them here, inside the runtime's
        // context; a half still locked belongs to a pending read or write,
        // whose future (on the runtime) drops it.
        let rd = self.rd.try_lock().ok().and_then(|mut g| g.take());
        let wr = self.wr.try_lock().ok().and_then(|mut g| g.take());
        let runtime = self.runtime.clone();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _enter = runtime.enter();
            drop(rd);
            drop(wr);
        }));
    }
}

/// Fills `buf` from what `rd` has ready now, without waiting; stops at the
/// first read that would wait, at end of stream (which the next read meets
/// again) or at an error (handed back for the next read to report);
/// returns the bytes read.
fn read_ready(rd: &mut ReadHalf<Io>, buf: &mut [u8]) -> (usize, Option<std::io::Error>) {
    let mut cx = Context::from_waker(Waker::noop());
    let mut filled = 0;
    while filled < buf.len() {
        let mut rb = ReadBuf::new(&mut buf[filled..]);
        match Pin::new(&mut *rd).poll_read(&mut cx, &mut rb) {
            Poll::Ready(Ok(())) if !rb.filled().is_empty() => filled += rb.filled().len(),
            Poll::Ready(Err(e)) => return (filled, Some(e)),
            _ => break,
        }
    }
    (filled, None)
}

#[napi]
impl NativeStream {
    /// Up to `max` bytes; `null` at end of stream. Waits for the first
    /// bytes, then takes whatever else has already arrived: one SSH packet
    /// per call into node would cap a stream at the rate node can take calls.
    #[napi]
    pub async fn read(&self, max: u32) -> Result<Option<Buffer>> {
        let mut guard = self.rd.lock().await;
        let Some(rd) = guard.as_mut() else {
            return Ok(None);
        };
        let pending = self.read_error.lock().ok().and_then(|mut e| e.take());
        if let Some(e) = pending {
            return Err(js_err(e));
        }
        let mut buf = vec![0u8; max.clamp(1, 1 << 20) as usize];
        let n = rd.read(&mut buf).await.map_err(js_err)?;
        if n == 0 {
            return Ok(None);
        }
        let (more, error) = read_ready(rd, &mut buf[n..]);
        if let (Some(e), Ok(mut slot)) = (error, self.read_error.lock()) {
            *slot = Some(e);
        }
        buf.truncate(n + more);
        // The Buffer keeps the Vec's allocation: a small read must not hold
        // on to a whole read-sized one while node queues it.
        if buf.len() < buf.capacity() / 2 {
            buf.shrink_to_fit();
        }
        Ok(Some(buf.into()))
    }

    /// Write all of `data`; resolves once it is handed to SSH (which
    /// applies the channel window: this is the write backpressure).
    #[napi]
    pub async fn write(&self, data: Buffer) -> Result<()> {
        let bytes: Vec<u8> = data.to_vec();
        let mut guard = self.wr.lock().await;
        let wr = guard
            .as_mut()
            .ok_or_else(|| js_err("the stream is closed"))?;
        wr.write_all(&bytes).await.map_err(js_err)
    }

    /// Send EOF.
    #[napi]
    pub async fn end(&self) -> Result<()> {
        let mut guard = self.wr.lock().await;
        if let Some(wr) = guard.as_mut() {
            wr.shutdown().await.map_err(js_err)?;
        }
        Ok(())
    }

    /// The client's address (`ip:port`), for server-side streams.
    #[napi(getter)]
    pub fn remote_address(&self) -> Option<String> {
        self.info
            .as_ref()
            .and_then(|i| i.remote_addr.map(|a| a.to_string()))
    }

    /// The client's iroh endpoint id, for server-side streams over iroh.
    #[napi(getter)]
    pub fn endpoint_id(&self) -> Option<String> {
        self.info.as_ref().and_then(|i| i.endpoint_id.clone())
    }

    /// The transport (`tcp`, …), for server-side streams.
    #[napi(getter)]
    pub fn transport(&self) -> Option<String> {
        self.info.as_ref().map(|i| i.transport.clone())
    }

    /// `SHA256:…` of the client's key, for server-side streams.
    #[napi(getter)]
    pub fn key_fingerprint(&self) -> Option<String> {
        self.info.as_ref().map(|i| i.key_fingerprint.clone())
    }

    /// Close both directions now.
    #[napi]
    pub fn close(&self) {
        self.release();
    }
}

/// Connect, authenticate and open one channel. Same library calls, same
/// order and same messages as `wraith connect`.
#[napi]
pub async fn connect(opts: ConnectOpts) -> Result<NativeStream> {
    let kind = transport_kind(opts.transport.as_deref())?;
    let mut t = ClientTransportOptions::new(kind);
    t.peer = opts.peer.clone();
    t.iroh_relay = opts.iroh_relay.clone();
    t.proxy = opts.proxy.clone();
    t.tls_server_name = opts.tls_server_name.clone();
    t.tls_ca = opts.tls_ca.as_ref().map(source);
    t.tls_pin = opts.tls_pin.clone();
    t.insecure = opts.insecure.unwrap_or(false);
    t.ws_path = opts.ws_path.clone();
    t.ws_host = opts.ws_host.clone();
    let mut profile = ClientProfile::new(t);
    // The first that works is used, as with `wraith connect --server a
    // --server b`.
    profile.servers = match &opts.server {
        Some(Either::A(one)) => vec![one.clone()],
        Some(Either::B(list)) => list.clone(),
        None => Vec::new(),
    };
    profile.identity = Some(source(&opts.identity));
    profile.passphrase = opts.passphrase.clone();
    profile.certificate = opts.certificate.as_ref().map(source);
    profile.host_key = opts.host_key.clone();
    profile.known_hosts = opts.known_hosts.as_ref().map(Into::into);
    profile.user = opts.user.clone();
    profile.check().map_err(js_err)?;
    let target = opts.target.as_deref().unwrap_or("wraith-control:0");
    let (thost, tport) = split_host_port(target, 0, "--stdio").map_err(js_err)?;
    let mut o = profile.connect_options().await.map_err(js_err)?;
    if let Some(t) = opts.connect_timeout {
        o.connect_timeout = Duration::from_secs(u64::from(t.max(1)));
    }
    let conn = open_channel(o, &thost, tport).await.map_err(js_err)?;
    Ok(NativeStream::new(Box::new(conn)))
}

/// Options of `serve()`.
#[napi(object)]
pub struct ServeOpts {
    /// Host key: a file path or the file's contents.
    pub host_key: Either<String, Buffer>,
    /// authorized_keys: a file path or the file's contents.
    pub authorized_keys: Either<String, Buffer>,
    /// Trusted user-certificate CAs, each a path or contents.
    pub cert_authority: Option<Vec<Either<String, Buffer>>>,
    /// Passphrase of an encrypted `hostKey`.
    pub passphrase: Option<String>,
    /// Listen address (default `127.0.0.1:0`).
    pub listen: Option<String>,
    /// `tcp` (default), `tls`, `ws`, `wss` or `iroh`.
    pub transport: Option<String>,
    /// ws, wss: only a WebSocket upgrade on this path reaches SSH (default `/`).
    pub ws_path: Option<String>,
    /// tls: certificate chain, PEM (path or contents).
    pub tls_cert: Option<Either<String, Buffer>>,
    /// tls: private key, PEM (path or contents).
    pub tls_key: Option<Either<String, Buffer>>,
    /// tls: answer non-SSH clients like nginx.
    pub stealth: Option<bool>,
    /// tls + stealth: relay non-SSH clients to this `host:port`.
    pub stealth_fallback: Option<String>,
    /// tls + stealth: seconds for the handshake and first request.
    pub stealth_timeout: Option<u32>,
    /// tls: ACME certificate for these domain names.
    pub acme_domain: Option<Vec<String>>,
    /// tls: ACME certificate for these IP addresses.
    pub acme_ip: Option<Vec<String>>,
    /// ACME account contact e-mail.
    pub acme_email: Option<String>,
    /// ACME account and certificate cache directory.
    pub acme_cache: Option<String>,
    /// ACME directory URL (default Let's Encrypt production).
    pub acme_directory: Option<String>,
    /// PEM file of a CA to trust for the ACME server's HTTPS.
    pub acme_ca_root: Option<String>,
    /// iroh: relay URL, `default` or `disabled`.
    pub iroh_relay: Option<String>,
    /// Outbound proxy for tunnel targets (server side), like `serve --proxy`.
    pub proxy: Option<String>,
    /// Let every key that may forward open a control channel, like `serve
    /// --hub-for-all-keys`. Default false, as in the CLI: only keys and CAs
    /// with the `hub` option get one.
    pub hub_for_all_keys: Option<bool>,
    /// Share the hub through this NATS broker, like `serve --hub`.
    pub hub: Option<String>,
    /// Subject prefix on the broker (default `wraith`), like `--hub-prefix`.
    pub hub_prefix: Option<String>,
    /// A NATS `.creds` file, like `--hub-creds`.
    pub hub_creds: Option<String>,
    /// The broker's CA (PEM file), like `--hub-ca`.
    pub hub_ca: Option<String>,
}

/// A running server.
#[napi]
pub struct NativeServer {
    address: String,
    endpoint_id: Option<String>,
    ticket: Option<String>,
    warnings: Vec<String>,
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    done: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
    hub: EventHub,
    channels: Arc<Mutex<Option<ChannelRx>>>,
}

type ChannelRx = tokio::sync::mpsc::Receiver<(ControlStream, ControlInfo)>;

#[napi]
impl NativeServer {
    /// The bound address, `ip:port`.
    #[napi(getter)]
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// iroh: the server's endpoint id.
    #[napi(getter)]
    pub fn endpoint_id(&self) -> Option<String> {
        self.endpoint_id.clone()
    }

    /// iroh: the ticket clients pass as `peer`.
    #[napi(getter)]
    pub fn ticket(&self) -> Option<String> {
        self.ticket.clone()
    }

    /// Lines of the key files that were skipped, and why (what `wraith
    /// serve` logs at startup).
    #[napi(getter)]
    pub fn warnings(&self) -> Vec<String> {
        self.warnings.clone()
    }

    /// From now on, control channels come to [`NativeServer::accept`]
    /// instead of the hub.
    #[napi]
    pub fn take_connections(&self) -> Result<()> {
        let rx = self.hub.take_channels(64);
        let channels = self.channels.clone();
        // Uncontended: nothing accepts before this returns.
        let mut slot = channels
            .try_lock()
            .map_err(|_| js_err("connections are already being taken"))?;
        *slot = Some(rx);
        Ok(())
    }

    /// The next control channel, or `null` once the server is closed.
    #[napi]
    pub async fn accept(&self) -> Result<Option<NativeStream>> {
        let mut slot = self.channels.lock().await;
        let Some(rx) = slot.as_mut() else {
            return Ok(None);
        };
        Ok(rx.recv().await.map(|(stream, info)| {
            let mut s = NativeStream::new(Box::new(stream));
            s.info = Some(info);
            s
        }))
    }

    /// Stop accepting, disconnect sessions gracefully, and resolve when done.
    #[napi]
    pub async fn close(&self) -> Result<()> {
        self.hub.release_channels();
        if let Ok(mut s) = self.stop.lock()
            && let Some(tx) = s.take()
        {
            let _ = tx.send(());
        }
        if let Some(task) = self.done.lock().await.take() {
            let _ = task.await;
        }
        Ok(())
    }
}

/// The server's transport settings from `serve()`'s options.
fn serve_transport(opts: &ServeOpts) -> Result<ServerTransportOptions> {
    let kind = transport_kind(opts.transport.as_deref())?;
    let mut t = ServerTransportOptions::new(kind);
    t.iroh_relay = opts.iroh_relay.clone();
    t.tls_cert = opts.tls_cert.as_ref().map(source);
    t.tls_key = opts.tls_key.as_ref().map(source);
    t.stealth = opts.stealth.unwrap_or(false);
    t.stealth_fallback = opts.stealth_fallback.clone();
    t.ws_path = opts.ws_path.clone();
    if let Some(secs) = opts.stealth_timeout {
        t.stealth_timeout = Duration::from_secs(u64::from(secs.max(1)));
    }
    t.acme_domains = opts.acme_domain.clone().unwrap_or_default();
    for ip in opts.acme_ip.iter().flatten() {
        t.acme_ips.push(ip.parse().map_err(|_| {
            js_err(format!(
                "invalid --acme-ip value {ip:?}: expected an IP address"
            ))
        })?);
    }
    t.acme_email = opts.acme_email.clone();
    t.acme_cache = opts.acme_cache.as_ref().map(Into::into);
    t.acme_directory = opts.acme_directory.clone();
    t.acme_ca_root = opts.acme_ca_root.as_ref().map(Into::into);
    t.check().map_err(js_err)?;
    Ok(t)
}

/// Start a server in this process. Same library calls, same order and
/// same messages as `wraith serve`.
#[napi]
pub async fn serve(opts: ServeOpts) -> Result<NativeServer> {
    let transport = serve_transport(&opts)?;
    let mut profile = ServerProfile::new(source(&opts.host_key), source(&opts.authorized_keys));
    profile.passphrase = opts.passphrase.clone();
    profile.cert_authorities = opts.cert_authority.iter().flatten().map(source).collect();
    let (mut o, warnings) = profile.serve_options().map_err(js_err)?;
    let warnings = warnings.iter().map(|w| Naming::Options.render(w)).collect();
    let host_key_for_iroh = o.host_key.clone();
    o.hub_for_all_keys = opts.hub_for_all_keys.unwrap_or(false);
    o.hub_nats = match &opts.hub {
        Some(url) => Some(
            NatsHubOptions::configure(
                url,
                opts.hub_prefix.as_deref(),
                opts.hub_creds.clone().map(Into::into),
                opts.hub_ca.clone().map(Into::into),
            )
            .map_err(js_err)?,
        ),
        None if opts.hub_prefix.is_some() || opts.hub_creds.is_some() || opts.hub_ca.is_some() => {
            return Err(js_err(wraith_core::Error::Usage(
                "--hub-prefix, --hub-creds and --hub-ca need --hub".into(),
            )));
        }
        None => None,
    };
    o.proxy = match &opts.proxy {
        Some(url) => Some(url.parse::<ProxyUrl>().map_err(js_err)?),
        None => None,
    };
    // tcp/tls default to a free loopback port; iroh to any free UDP port.
    let listen = match (&opts.listen, transport.kind) {
        (Some(l), _) => Some(l.as_str()),
        (None, TransportKind::Iroh) => None,
        (None, _) => Some("127.0.0.1:0"),
    };
    let acceptor = transport
        .bind(listen, &host_key_for_iroh)
        .await
        .map_err(js_err)?;
    let address = match acceptor.local_addr() {
        Some(a) => a.to_string(),
        None => acceptor.describe(),
    };
    let endpoint_id = acceptor.endpoint_id();
    let ticket = acceptor.ticket();
    let server = Server::new(o);
    let hub = server.hub().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = server
            .run(acceptor, async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(NativeServer {
        address,
        endpoint_id,
        ticket,
        warnings,
        stop: std::sync::Mutex::new(Some(tx)),
        done: Arc::new(Mutex::new(Some(task))),
        hub,
        channels: Arc::new(Mutex::new(None)),
    })
}

/// A fresh Ed25519 key pair in OpenSSH format.
#[napi(object)]
pub struct KeyPair {
    /// The private key (OpenSSH PEM).
    pub private_key: String,
    /// The public key line.
    pub public_key: String,
}

/// Generate an Ed25519 key pair (like `wraith keygen`).
#[napi]
pub fn generate_key(comment: Option<String>) -> Result<KeyPair> {
    let key = wraith_core::keys::generate_ed25519(comment.as_deref().unwrap_or("wraith"))
        .map_err(js_err)?;
    let private_key = key
        .to_openssh(wraith_core::keys::ssh_key::LineEnding::LF)
        .map_err(js_err)?
        .to_string();
    let public_key = key.public_key().to_openssh().map_err(js_err)?;
    Ok(KeyPair {
        private_key,
        public_key,
    })
}
