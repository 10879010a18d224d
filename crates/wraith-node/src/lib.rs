//! Node.js bindings for wraith (napi-rs). The JavaScript layer in
//! `index.js` wraps these native objects into a `stream.Duplex`, a server
//! object and an EventTarget adapter; this file only moves bytes and maps
//! options onto wraith-core's.
//!
//! Every russh channel lives on napi's tokio runtime and is dropped there:
//! a `ChannelStream` dropped outside a runtime panics (see NOTES.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Either};
use napi::{Error, Result, Status};
use napi_derive::napi;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{Mutex, oneshot};

use wraith_core::client::{ConnectOptions, HostKeyPolicy, open_channel};
use wraith_core::keys::{HostKeyPin, load_private_key};
use wraith_core::server::{
    AuthorizedKeys, ControlInfo, ControlStream, EventHub, ServeOptions, Server,
};
use wraith_core::transport::{TcpAcceptor, TcpTransport};

type Io = Box<dyn IoStream>;
trait IoStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> IoStream for T {}

/// A JavaScript `Error` with wraith's own message (as the CLI prints it).
fn js_err(e: impl std::fmt::Display) -> Error {
    Error::new(Status::GenericFailure, e.to_string())
}

/// A key given as a file path or as the file's contents.
type KeySource = Either<String, Buffer>;

fn private_key(
    src: &KeySource,
    what: &'static str,
    flag: &'static str,
) -> Result<wraith_core::keys::ssh_key::PrivateKey> {
    match src {
        Either::A(path) => load_private_key(Path::new(path), None, what, flag).map_err(js_err),
        Either::B(bytes) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| js_err(format!("{what} ({flag}) is not UTF-8 text")))?;
            wraith_core::keys::ssh_key::PrivateKey::from_openssh(text.trim()).map_err(|e| {
                js_err(format!(
                    "{what} ({flag}) is not an OpenSSH private key ({e})"
                ))
            })
        }
    }
}

/// `host[:port]`, IPv6 in brackets; `default_port` when none is given.
fn split_host_port(s: &str, default_port: u16, flag: &str) -> Result<(String, u16)> {
    let bad = || js_err(format!("invalid {flag} value {s:?}: expected host[:port]"));
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port = match tail.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| bad())?,
            None if tail.is_empty() => default_port,
            None => return Err(bad()),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), p.parse().map_err(|_| bad())?)),
        _ if !s.is_empty() => Ok((s.to_string(), default_port)),
        _ => Err(bad()),
    }
}

/// Options of `connect()`.
#[napi(object)]
pub struct ConnectOpts {
    /// `host[:port]` of the server (port 22 if omitted).
    pub server: String,
    /// Private key: a file path or the file's contents.
    pub identity: Either<String, Buffer>,
    /// Pinned host key: `SHA256:…`, a public key line, or a `.pub` path.
    pub host_key: Option<String>,
    /// Login name (default: `USER` or `wraith`).
    pub user: Option<String>,
    /// `host:port` to reach from the server; default `wraith-control:0`.
    pub target: Option<String>,
    /// Only `tcp` in this build.
    pub transport: Option<String>,
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
}

impl NativeStream {
    fn new(io: Io) -> Self {
        let (rd, wr) = tokio::io::split(io);
        NativeStream {
            rd: Arc::new(Mutex::new(Some(rd))),
            wr: Arc::new(Mutex::new(Some(wr))),
            runtime: tokio::runtime::Handle::current(),
            info: None,
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

#[napi]
impl NativeStream {
    /// Up to `max` bytes; `null` at end of stream.
    #[napi]
    pub async fn read(&self, max: u32) -> Result<Option<Buffer>> {
        let mut guard = self.rd.lock().await;
        let Some(rd) = guard.as_mut() else {
            return Ok(None);
        };
        let mut buf = vec![0u8; max.clamp(1, 1 << 20) as usize];
        let n = rd.read(&mut buf).await.map_err(js_err)?;
        if n == 0 {
            return Ok(None);
        }
        buf.truncate(n);
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

/// Connect, authenticate and open one channel.
#[napi]
pub async fn connect(opts: ConnectOpts) -> Result<NativeStream> {
    let transport = opts.transport.as_deref().unwrap_or("tcp");
    if transport != "tcp" {
        return Err(js_err(format!(
            "invalid --transport value {transport:?}: this build of the Node package supports tcp"
        )));
    }
    let (host, port) = split_host_port(&opts.server, 22, "--server")?;
    let identity = private_key(&opts.identity, "identity", "--identity")?;
    let target = opts.target.as_deref().unwrap_or("wraith-control:0");
    let (thost, tport) = split_host_port(target, 0, "target")?;
    let user = opts
        .user
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "wraith".into());
    let tcp = Arc::new(TcpTransport::new(host.clone(), port));
    let mut o = ConnectOptions::new(tcp, host, port, user, identity);
    if let Some(pin) = &opts.host_key {
        o.host_key = HostKeyPolicy::Pin(HostKeyPin::parse(pin).map_err(js_err)?);
    }
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
    /// Listen address (default `127.0.0.1:0`).
    pub listen: Option<String>,
    /// Only `tcp` in this build.
    pub transport: Option<String>,
}

/// A running server.
#[napi]
pub struct NativeServer {
    address: String,
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

/// Start a server in this process.
#[napi]
pub async fn serve(opts: ServeOpts) -> Result<NativeServer> {
    let transport = opts.transport.as_deref().unwrap_or("tcp");
    if transport != "tcp" {
        return Err(js_err(format!(
            "invalid --transport value {transport:?}: this build of the Node package supports tcp"
        )));
    }
    let host_key = private_key(&opts.host_key, "host key", "--key")?;
    let keys = match &opts.authorized_keys {
        Either::A(path) => AuthorizedKeys::load(Path::new(path)).map_err(js_err)?.0,
        Either::B(bytes) => AuthorizedKeys::parse(&String::from_utf8_lossy(bytes)).0,
    };
    let listen = opts.listen.as_deref().unwrap_or("127.0.0.1:0");
    let acceptor = TcpAcceptor::bind(listen).await.map_err(js_err)?;
    let address = acceptor.local_addr().to_string();
    let server = Server::new(ServeOptions::new(host_key, keys));
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
