//! The tunnels under test: what each one is ([`TunnelSpec`]), how the bench
//! reaches a target through it ([`Route`]), and a running instance with its
//! client and server processes ([`Tunnel`]), over loopback or over a long
//! path ([`Link`]: delay lines between client and server). Starting and
//! stopping is all this module does; measuring lives in `measure`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use clap::ValueEnum;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::delayline::DelayLine;
use crate::netns::{self, ClientNetns};
use crate::process::{Launcher, Proc, Side, descendants, kill_pid};
use crate::targets::{Target, Targets};
use crate::tools::{Keys, Tools, free_udp_port};
use crate::{openssh, socks5, wraith};

/// Bound for connecting to a tunnel's local port (or a target directly).
pub(crate) const CONNECT: Duration = Duration::from_secs(15);

/// Bound for starting a whole tunnel (server, client, readiness).
pub(crate) const START: Duration = Duration::from_secs(45);

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// No tunnel: straight to the target (the loopback ceiling).
    Direct,
    /// OpenSSH `ssh -D` (SOCKS5) against a throwaway sshd.
    OpensshSocks5,
    /// OpenSSH `ssh -L` against a throwaway sshd.
    OpensshForward,
    /// `wraith connect --socks5` against `wraith serve`.
    WraithSocks5,
    /// `wraith connect --forward` against `wraith serve`.
    WraithForward,
    /// `wraith connect --socks5 --transport tls` against `wraith serve
    /// --transport tls` (SSH inside TLS 1.3, a throwaway CA).
    WraithTlsSocks5,
    /// `wraith connect --socks5 --transport ws` against `wraith serve
    /// --transport ws --ws-path …` (SSH in WebSocket messages over TCP).
    WraithWsSocks5,
    /// The same over `--transport wss` (WebSocket inside TLS).
    WraithWssSocks5,
    /// `wraith connect --socks5 --transport iroh --peer <ticket>` against
    /// `wraith serve --transport iroh` (QUIC on loopback, relays disabled).
    WraithIrohSocks5,
}

impl Kind {
    pub(crate) const ALL: [Kind; 9] = [
        Kind::Direct,
        Kind::OpensshSocks5,
        Kind::OpensshForward,
        Kind::WraithSocks5,
        Kind::WraithForward,
        Kind::WraithTlsSocks5,
        Kind::WraithWsSocks5,
        Kind::WraithWssSocks5,
        Kind::WraithIrohSocks5,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Direct => "direct",
            Kind::OpensshSocks5 => "openssh-socks5",
            Kind::OpensshForward => "openssh-forward",
            Kind::WraithSocks5 => "wraith-socks5",
            Kind::WraithForward => "wraith-forward",
            Kind::WraithTlsSocks5 => "wraith-tls-socks5",
            Kind::WraithWsSocks5 => "wraith-ws-socks5",
            Kind::WraithWssSocks5 => "wraith-wss-socks5",
            Kind::WraithIrohSocks5 => "wraith-iroh-socks5",
        }
    }

    /// How a user would name it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Direct => "no tunnel",
            Kind::OpensshSocks5 => "ssh -D",
            Kind::OpensshForward => "ssh -L",
            Kind::WraithSocks5 => "wraith socks5",
            Kind::WraithForward => "wraith --forward",
            Kind::WraithTlsSocks5 => "wraith tls socks5",
            Kind::WraithWsSocks5 => "wraith ws socks5",
            Kind::WraithWssSocks5 => "wraith wss socks5",
            Kind::WraithIrohSocks5 => "wraith iroh socks5",
        }
    }

    pub(crate) fn implementation(self) -> Implementation {
        match self {
            Kind::Direct => Implementation::None,
            Kind::OpensshSocks5 | Kind::OpensshForward => Implementation::Openssh,
            Kind::WraithSocks5
            | Kind::WraithForward
            | Kind::WraithTlsSocks5
            | Kind::WraithWsSocks5
            | Kind::WraithWssSocks5
            | Kind::WraithIrohSocks5 => Implementation::Wraith,
        }
    }

    pub(crate) fn mode(self) -> Mode {
        match self {
            Kind::Direct => Mode::Direct,
            Kind::OpensshSocks5
            | Kind::WraithSocks5
            | Kind::WraithTlsSocks5
            | Kind::WraithWsSocks5
            | Kind::WraithWssSocks5
            | Kind::WraithIrohSocks5 => Mode::Socks5,
            Kind::OpensshForward | Kind::WraithForward => Mode::Forward,
        }
    }

    /// The transport a wraith tunnel runs over; `None` for the others.
    pub(crate) fn wraith_transport(self) -> Option<wraith::WraithTransport> {
        match self {
            Kind::WraithSocks5 | Kind::WraithForward => Some(wraith::WraithTransport::Tcp),
            Kind::WraithTlsSocks5 => Some(wraith::WraithTransport::Tls),
            Kind::WraithWsSocks5 => Some(wraith::WraithTransport::Ws),
            Kind::WraithWssSocks5 => Some(wraith::WraithTransport::Wss),
            Kind::WraithIrohSocks5 => Some(wraith::WraithTransport::Iroh),
            Kind::Direct | Kind::OpensshSocks5 | Kind::OpensshForward => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Implementation {
    None,
    Openssh,
    Wraith,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Mode {
    Direct,
    Socks5,
    Forward,
}

/// What lies between a tunnel's client and its server (for no tunnel:
/// between the bench and the targets).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// Loopback, nothing in between.
    Loopback,
    /// Delay lines that hold each direction for this long (RTT/2): TCP
    /// relays, or for iroh a UDP relay that the client, in its own network
    /// namespace (`netns`), dials instead of the server.
    Delayed(Duration),
}

/// One tunnel to measure. `cipher` is forced for OpenSSH and expected (as
/// negotiated) for wraith; `None` for no tunnel.
#[derive(Clone, Debug)]
pub(crate) struct TunnelSpec {
    pub(crate) kind: Kind,
    pub(crate) cipher: Option<String>,
}

impl TunnelSpec {
    /// `kind` with whatever cipher it negotiates.
    pub(crate) fn any_cipher(kind: Kind) -> Self {
        TunnelSpec { kind, cipher: None }
    }

    pub(crate) fn label(&self) -> String {
        match &self.cipher {
            Some(c) => format!("{} {}", self.kind.label(), short_cipher(c)),
            None => self.kind.label().to_string(),
        }
    }
}

/// `aes128-gcm@openssh.com` → `aes128-gcm`.
pub(crate) fn short_cipher(c: &str) -> &str {
    c.split('@').next().unwrap_or(c)
}

/// How the bench reaches each target.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// Straight to the target.
    Direct {
        source: SocketAddr,
        sink: SocketAddr,
        echo: SocketAddr,
    },
    /// Through a SOCKS5 proxy, CONNECT to the target.
    Socks5 {
        proxy: SocketAddr,
        source: SocketAddr,
        sink: SocketAddr,
        echo: SocketAddr,
    },
    /// To a local forward listener per target.
    Forward {
        source: SocketAddr,
        sink: SocketAddr,
        echo: SocketAddr,
    },
}

impl Route {
    /// Opens one connection to `target` through the tunnel (including the
    /// SOCKS5 handshake, as a real client would pay it).
    pub(crate) async fn connect(&self, target: Target) -> Result<TcpStream> {
        let pick = |source, sink, echo| match target {
            Target::Source => source,
            Target::Sink => sink,
            Target::Echo => echo,
        };
        let attempt = async {
            match *self {
                Route::Direct { source, sink, echo } | Route::Forward { source, sink, echo } => {
                    let addr = pick(source, sink, echo);
                    let s = TcpStream::connect(addr)
                        .await
                        .with_context(|| format!("cannot connect to {addr}"))?;
                    s.set_nodelay(true)?;
                    Ok(s)
                }
                Route::Socks5 {
                    proxy,
                    source,
                    sink,
                    echo,
                } => socks5::connect(proxy, pick(source, sink, echo)).await,
            }
        };
        tokio::time::timeout(CONNECT, attempt)
            .await
            .map_err(|_| anyhow!("opening a tunnelled connection took over {CONNECT:?}"))?
    }
}

/// A running tunnel. Stop it with [`Tunnel::stop`]; dropping it kills the
/// processes the bench started directly.
pub(crate) struct Tunnel {
    pub(crate) spec: TunnelSpec,
    pub(crate) route: Route,
    /// The client-side processes (none for no tunnel).
    pub(crate) client: Option<Side>,
    /// The server-side processes (none for no tunnel).
    pub(crate) server: Option<Side>,
    /// The cipher in use, if known (read back from wraith's log).
    pub(crate) cipher: Option<String>,
    /// Client first, then server.
    procs: Vec<Proc>,
    /// The delay lines of a [`Link::Delayed`] tunnel; they stop with it.
    delay_lines: Vec<DelayLine>,
    /// The iroh client's namespace on a [`Link::Delayed`] path; removed
    /// after the client has stopped.
    netns: Option<ClientNetns>,
}

impl Tunnel {
    /// What the tunnel's processes wrote to stderr, for a failed transfer.
    pub(crate) fn stderr_excerpts(&self) -> String {
        self.procs
            .iter()
            .map(|p| format!("--- {} ---\n{}", p.label(), p.stderr_excerpt()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Starts the tunnel's processes through `launcher` (as users run
    /// them, or under a profiler), connected over `link`. It does not
    /// bound itself: [`crate::bench::Bench::start`] gives it [`START`].
    pub(crate) async fn start(
        spec: &TunnelSpec,
        tools: &Tools,
        keys: &Keys,
        targets: &Targets,
        launcher: &Launcher,
        link: Link,
    ) -> Result<Self> {
        let (source, sink, echo) = (
            targets.addr(Target::Source),
            targets.addr(Target::Sink),
            targets.addr(Target::Echo),
        );
        let all = [source, sink, echo];
        let mut delay_lines = Vec::new();
        let tunnel = |route, client, server, cipher, procs, delay_lines, netns| Self {
            spec: spec.clone(),
            route,
            client,
            server,
            cipher,
            procs,
            delay_lines,
            netns,
        };
        match spec.kind {
            Kind::Direct => {
                let [source, sink, echo] = match link {
                    Link::Loopback => all,
                    Link::Delayed(one_way) => {
                        let mut via = all;
                        for addr in &mut via {
                            let dl = DelayLine::tcp(*addr, one_way).await?;
                            *addr = dl.addr();
                            delay_lines.push(dl);
                        }
                        via
                    }
                };
                Ok(tunnel(
                    Route::Direct { source, sink, echo },
                    None,
                    None,
                    None,
                    Vec::new(),
                    delay_lines,
                    None,
                ))
            }
            Kind::OpensshSocks5 | Kind::OpensshForward => {
                let cipher = spec
                    .cipher
                    .clone()
                    .ok_or_else(|| anyhow!("no cipher chosen for OpenSSH"))?;
                let (sshd, addr) = openssh::start_sshd(tools, keys, launcher).await?;
                let addr = match link {
                    Link::Loopback => addr,
                    Link::Delayed(one_way) => {
                        let dl = DelayLine::tcp(addr, one_way).await?;
                        let via = dl.addr();
                        delay_lines.push(dl);
                        via
                    }
                };
                let listen = if spec.kind == Kind::OpensshSocks5 {
                    openssh::Listen::Socks
                } else {
                    openssh::Listen::Forwards(all.to_vec())
                };
                let (ssh, local) =
                    openssh::start_client(tools, keys, addr, &cipher, &listen, launcher).await?;
                let route = match listen {
                    openssh::Listen::Socks => Route::Socks5 {
                        proxy: local[0],
                        source,
                        sink,
                        echo,
                    },
                    openssh::Listen::Forwards(_) => Route::Forward {
                        source: local[0],
                        sink: local[1],
                        echo: local[2],
                    },
                };
                let client = Side::Process(ssh.pid());
                let server = Side::ChildrenOf(sshd.pid());
                Ok(tunnel(
                    route,
                    Some(client),
                    Some(server),
                    Some(cipher),
                    vec![ssh, sshd],
                    delay_lines,
                    None,
                ))
            }
            Kind::WraithSocks5
            | Kind::WraithForward
            | Kind::WraithTlsSocks5
            | Kind::WraithWsSocks5
            | Kind::WraithWssSocks5
            | Kind::WraithIrohSocks5 => {
                let transport = spec
                    .kind
                    .wraith_transport()
                    .ok_or_else(|| anyhow!("no wraith transport for {}", spec.label()))?;
                let iroh = transport == wraith::WraithTransport::Iroh;
                // iroh prints no socket address: give it a port to learn it.
                let listen = match link {
                    Link::Delayed(_) if iroh => {
                        SocketAddr::from(([127, 0, 0, 1], free_udp_port()?))
                    }
                    _ => SocketAddr::from(([127, 0, 0, 1], 0)),
                };
                let (server, srv) =
                    wraith::start_server(tools, keys, transport, listen, launcher).await?;
                let mut client_netns = None;
                let addr = match link {
                    Link::Loopback => srv.connect.clone(),
                    Link::Delayed(one_way) => {
                        let socket = srv
                            .socket
                            .ok_or_else(|| anyhow!("wraith serve printed no address"))?;
                        if iroh {
                            // The client dials only the relay's address (the
                            // ticket would also give the server's own), from
                            // a namespace where the addresses the server
                            // announces for hole punching lead nowhere.
                            let id = srv
                                .endpoint_id
                                .as_deref()
                                .ok_or_else(|| anyhow!("wraith serve printed no endpoint id"))?;
                            let ip = netns::check_allowed(tools.ip.as_deref())?;
                            let ns = ClientNetns::create(&ip).await?;
                            let listen = SocketAddr::from((ns.host_ip(), 0));
                            let dl = DelayLine::udp(listen, socket, one_way).await?;
                            let peer = format!("{id}@{}", dl.addr());
                            delay_lines.push(dl);
                            client_netns = Some(ns);
                            peer
                        } else {
                            let dl = DelayLine::tcp(socket, one_way).await?;
                            let via = dl.addr().to_string();
                            delay_lines.push(dl);
                            via
                        }
                    }
                };
                let forward_to: &[SocketAddr] = if spec.kind.mode() == Mode::Forward {
                    &all
                } else {
                    &[]
                };
                let (client, l) = wraith::start_client(
                    tools,
                    keys,
                    transport,
                    &addr,
                    forward_to,
                    launcher,
                    client_netns.as_ref(),
                )
                .await?;
                let route = match l.socks5 {
                    Some(proxy) => Route::Socks5 {
                        proxy,
                        source,
                        sink,
                        echo,
                    },
                    None => {
                        let local_for = |t: SocketAddr| {
                            l.forwards
                                .iter()
                                .find(|(_, target)| *target == t)
                                .map(|(local, _)| *local)
                                .ok_or_else(|| anyhow!("wraith printed no forward for {t}"))
                        };
                        Route::Forward {
                            source: local_for(source)?,
                            sink: local_for(sink)?,
                            echo: local_for(echo)?,
                        }
                    }
                };
                let cipher = l.cipher.clone().or_else(|| spec.cipher.clone());
                Ok(tunnel(
                    route,
                    Some(Side::Process(client.pid())),
                    Some(Side::Process(server.pid())),
                    cipher,
                    vec![client, server],
                    delay_lines,
                    client_netns,
                ))
            }
        }
    }

    /// Stops the client, then the server. sshd's per-connection processes
    /// end by themselves once the client is gone; any still there after a
    /// grace period are killed while they are still the listener's
    /// descendants, so no unrelated process can be hit.
    pub(crate) async fn stop(self) {
        let listener = match &self.server {
            Some(Side::ChildrenOf(root)) => Some(*root),
            _ => None,
        };
        let mut procs = self.procs.into_iter();
        if let Some(client) = procs.next() {
            client.stop().await;
        }
        if let Some(root) = listener {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            while !descendants(root).is_empty() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for pid in descendants(root) {
                kill_pid(pid);
            }
        }
        for p in procs {
            p.stop().await;
        }
        drop(self.delay_lines);
        drop(self.netns);
    }
}
