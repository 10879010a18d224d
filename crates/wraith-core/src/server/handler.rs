//! The russh server handler for one session: authentication policy, channel
//! policy (reserved `wraith-*` names, no shells), and the hand-off of each
//! channel to a connector, a remote-forward listener, the hub or the
//! udpgw service.
//!
//! Never log a channel's target here: not the host, not the port, not the
//! socket path, at any level.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelOpenFailure};

use super::Shared;
use super::decide::{self, Decision, ServerRules};
use super::hub;
use super::metrics::ChannelKind;
use super::outbound;
use super::remote_forward::{Proto, RemoteForwards};
use super::udpgw;
use crate::keys::fingerprint;
use crate::proto::certificate::check_certificate;
use crate::proto::policy::{SessionPolicy, SocketRule, check_socket_path};
use crate::transport::PeerInfo;

pub(crate) struct SessionHandler {
    shared: Arc<Shared>,
    peer: PeerInfo,
    authed: Arc<super::AuthFlag>,
    /// Set once authentication succeeds: what this session may do.
    policy: Option<SessionPolicy>,
    forwards: RemoteForwards,
    /// Open channels, for the per-session cap.
    channels: Arc<std::sync::atomic::AtomicUsize>,
    /// Failed authentication attempts so far on this connection.
    failures: usize,
    /// The fingerprint of the key that authenticated (for embedders).
    key_fingerprint: String,
    /// Open control channels, for `max_control_channels_per_session`.
    control_channels: Arc<std::sync::atomic::AtomicUsize>,
    /// UDP flows open on all udpgw channels, for `max_udp_flows_per_session`.
    udp_flows: Arc<std::sync::atomic::AtomicUsize>,
}

/// Decrements the channel count when a channel's task ends.
struct ChannelSlot(
    Arc<std::sync::atomic::AtomicUsize>,
    Option<super::metrics::OpenChannel>,
);

impl Drop for ChannelSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionHandler {
    pub(crate) fn new(
        shared: Arc<Shared>,
        peer: PeerInfo,
        authed: Arc<super::AuthFlag>,
        channels: Arc<std::sync::atomic::AtomicUsize>,
    ) -> Self {
        SessionHandler {
            peer,
            authed,
            policy: None,
            forwards: RemoteForwards::new(shared.forward_ports.clone()),
            shared,
            channels,
            failures: 0,
            key_fingerprint: String::new(),
            control_channels: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            udp_flows: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }

    /// Count a failed attempt (key probes included, as OpenSSH does) and
    /// drop the connection once the limit is reached, so one connection
    /// cannot try keys without end.
    fn rejected(&mut self) -> Result<Auth, russh::Error> {
        self.failures += 1;
        let max = self.shared.options.max_auth_attempts;
        if max != 0 && self.failures == max {
            self.shared.metrics.refusal("--max-auth-attempts");
            tracing::info!(
                remote_addr = %self.peer.log_addr(),
                attempts = self.failures,
                "too many authentication failures"
            );
            // russh (configured for max + 1, counting the client's opening
            // "none" request) answers the next request with a disconnect.
        }
        if max != 0 && self.failures > max {
            // A client that skipped "none": cut it off ourselves.
            return Err(russh::Error::Disconnect);
        }
        Ok(Auth::reject())
    }

    fn log_auth(&self, user: &str, key_fingerprint: &str, result: &'static str) {
        self.shared.metrics.auth(result);
        tracing::info!(
            remote_addr = %self.peer.log_addr(),
            user = %log_safe(user),
            key_fingerprint = %key_fingerprint,
            result = %result,
            "auth attempt"
        );
    }

    fn log_reject(&self, user: &str, key_fingerprint: &str, reason: &str) {
        self.shared.metrics.auth("reject");
        tracing::info!(
            remote_addr = %self.peer.log_addr(),
            user = %log_safe(user),
            key_fingerprint = %key_fingerprint,
            result = %"reject",
            reason = %reason,
            "auth attempt"
        );
    }

    fn accept(&mut self, user: &str, fp: &str, policy: SessionPolicy) -> Auth {
        self.log_auth(user, fp, "accept");
        self.key_fingerprint = fp.to_string();
        self.policy = Some(policy);
        if !self.authed.load(Ordering::Acquire) {
            self.shared.metrics.sessions.inc();
        }
        self.authed.store(true, Ordering::Release);
        Auth::Accept
    }

    /// The policy of an authenticated session; `None` before auth.
    fn policy(&self) -> Option<&SessionPolicy> {
        if self.authed.load(Ordering::Acquire) {
            self.policy.as_ref()
        } else {
            None
        }
    }

    /// The server-wide settings channel decisions depend on.
    fn rules(&self) -> ServerRules<'_> {
        ServerRules {
            hub_for_all_keys: self.shared.options.hub_for_all_keys,
            allow_stream_local: &self.shared.options.allow_stream_local,
            udpgw: self.shared.options.udpgw,
            outbound_proxy: self.shared.options.proxy.is_some(),
        }
    }

    /// Answer a refusing decision: log it (if it has a reason) and reject.
    async fn refused(&self, what: &'static str, decision: Decision, reply: ChannelOpenHandle) {
        let code = match decision {
            Decision::Refuse { code, reason } => {
                if let Some(reason) = reason {
                    self.refuse(what, reason);
                }
                code
            }
            // Not a refusal: a request of one kind decided as another.
            _ => ChannelOpenFailure::AdministrativelyProhibited,
        };
        reply.reject(code).await;
    }

    /// Log a refused channel: who, and why in general terms — never where to.
    fn refuse(&self, what: &'static str, reason: &'static str) {
        tracing::info!(
            remote_addr = %self.peer.log_addr(),
            channel = %what,
            reason = %reason,
            "channel refused"
        );
    }

    /// Take a channel slot, or log the refusal and return `None` when the
    /// session is at its cap (the caller answers `ResourceShortage`).
    fn channel_slot(&self, what: &'static str, kind: ChannelKind) -> Option<ChannelSlot> {
        let max = self.shared.options.max_channels_per_session;
        let n = self.channels.fetch_add(1, Ordering::AcqRel);
        let open = (max == 0 || n < max).then(|| self.shared.metrics.channel(kind));
        let slot = ChannelSlot(self.channels.clone(), open);
        if slot.1.is_none() {
            drop(slot);
            self.shared.metrics.refusal("--max-channels-per-session");
            self.refuse(what, "too many channels in this session");
            return None;
        }
        Some(slot)
    }

    /// Take a control-channel slot, or log the refusal and return `None`
    /// when the session holds `max_control_channels_per_session` already.
    fn control_slot(&self) -> Option<ChannelSlot> {
        let max = self.shared.options.max_control_channels_per_session;
        let n = self.control_channels.fetch_add(1, Ordering::AcqRel);
        let slot = ChannelSlot(self.control_channels.clone(), None);
        if max != 0 && n >= max {
            drop(slot);
            self.shared.metrics.refusal("--max-control-channels");
            self.refuse("direct-tcpip", "too many control channels in this session");
            return None;
        }
        Some(slot)
    }

    /// The address a remote forward will actually bind: loopback unless
    /// gateway ports are on (then as the client asks: empty or `*` for all
    /// IPv4 interfaces, `localhost`, an address, or a name resolved here).
    async fn remote_bind_ip(&self, requested: &str) -> Option<IpAddr> {
        if !self.shared.options.gateway_ports {
            return Some(if requested == "::1" {
                IpAddr::V6(Ipv6Addr::LOCALHOST)
            } else {
                IpAddr::V4(Ipv4Addr::LOCALHOST)
            });
        }
        match requested {
            "" | "*" => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            "localhost" => Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            other => match other.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => tokio::net::lookup_host((other, 0))
                    .await
                    .ok()?
                    .next()
                    .map(|a| a.ip()),
            },
        }
    }
}

/// Check a `direct-streamlocal` path against `rules` with both sides
/// canonicalised (symlinks resolved), then connect to the canonical path.
/// `Err(true)`: not permitted; `Err(false)`: permitted but not reachable.
/// A path outside the rules is "not permitted" whether or not it exists,
/// so the answer reveals nothing about the rest of the file system.
async fn connect_allowed_socket(
    requested: &str,
    rules: &[SocketRule],
    timeout: std::time::Duration,
) -> Result<crate::transport::BoxStream, bool> {
    let lexical = check_socket_path(requested).map_err(|_| true)?;
    let target = tokio::fs::canonicalize(&lexical).await.ok();
    let probe = target.as_deref().unwrap_or(&lexical);
    let mut allowed = false;
    for rule in rules {
        let canonical = tokio::fs::canonicalize(rule.path())
            .await
            .unwrap_or_else(|_| rule.path().to_path_buf());
        if rule.matches_canonical(&canonical, probe) {
            allowed = true;
            break;
        }
    }
    if !allowed {
        return Err(true);
    }
    let Some(target) = target else {
        return Err(false);
    };
    let Some(path) = target.to_str() else {
        return Err(false);
    };
    outbound::connect_unix(path, timeout)
        .await
        .map_err(|_| false)
}

/// On its own task: dial the target, then accept the channel and copy both
/// ways, or refuse it with `ConnectFailed`. The error is not logged: it
/// would name the destination.
fn connect_and_splice(
    channel: Channel<Msg>,
    reply: ChannelOpenHandle,
    slot: ChannelSlot,
    connect: impl std::future::Future<Output = std::io::Result<crate::transport::BoxStream>>
    + Send
    + 'static,
) {
    tokio::spawn(async move {
        let _slot = slot;
        match connect.await {
            Ok(mut target) => {
                reply.accept().await;
                let mut channel = channel.into_stream();
                let _ = crate::io::splice(&mut channel, &mut target).await;
            }
            Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
        }
    });
}

/// Keep user-supplied text from forging log fields or lines.
fn log_safe(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(64)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '=' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if out.is_empty() {
        out.push('-');
    }
    out
}

impl russh::server::Handler for SessionHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        // Clients send "none" first to learn the methods; not an attack.
        Ok(Auth::Reject {
            proceed_with_methods: Some(russh::MethodSet::from(&[russh::MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    async fn auth_password(&mut self, user: &str, _password: &str) -> Result<Auth, Self::Error> {
        self.log_auth(user, "none", "reject");
        self.rejected()
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        let keys = self.shared.authorized_keys();
        if let Some(entry) = keys.find(offer.public_key) {
            if let Err(reason) = entry
                .options
                .admits(self.peer.remote_addr.map(|a| a.ip()), now_unix())
            {
                self.log_reject(user, &fingerprint(offer.public_key), &reason);
                return self.rejected();
            }
            return Ok(Auth::Accept);
        }
        // russh shows us a certificate's inner key here, not the
        // certificate; with a CA configured, let the signature be checked
        // and decide in `auth_openssh_certificate`.
        if keys.has_cert_authorities() {
            return Ok(Auth::Accept);
        }
        self.log_auth(user, &fingerprint(offer.public_key), "reject");
        self.rejected()
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        let fp = fingerprint(key.public_key);
        let entry = self.shared.authorized_keys().find(key.public_key).cloned();
        let Some(entry) = entry else {
            self.log_auth(user, &fp, "reject");
            return self.rejected();
        };
        match entry
            .options
            .admits(self.peer.remote_addr.map(|a| a.ip()), now_unix())
        {
            Ok(()) => Ok(self.accept(user, &fp, entry.options.policy())),
            Err(reason) => {
                self.log_reject(user, &fp, &reason);
                self.rejected()
            }
        }
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        let fp = fingerprint(&russh::keys::PublicKey::from(
            certificate.public_key().clone(),
        ));
        let ca = self
            .shared
            .authorized_keys()
            .find_ca(certificate.signature_key())
            .cloned();
        let Some(ca) = ca else {
            self.log_reject(user, &fp, "certificate signed by an untrusted CA");
            return self.rejected();
        };
        let peer = self.peer.remote_addr.map(|a| a.ip());
        match check_certificate(certificate, &ca.options, user, peer, now_unix()) {
            Ok(policy) => Ok(self.accept(user, &fp, policy)),
            Err(reason) => {
                self.log_reject(user, &fp, &reason);
                self.rejected()
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        // No shells, exec, pty or subsystems: this is a tunnel server.
        tracing::debug!(remote_addr = %self.peer.log_addr(), "session channel refused");
        prohibit(reply).await;
        Ok(())
    }

    async fn channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        prohibit(reply).await;
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let decision = decide::direct_tcpip(
            self.policy(),
            self.rules(),
            host_to_connect,
            port_to_connect,
        );
        let (host, port) = match decision {
            Decision::Dial { host, port } => (host, port),
            Decision::Hub => {
                let Some(control) = self.control_slot() else {
                    reply.reject(ChannelOpenFailure::ResourceShortage).await;
                    return Ok(());
                };
                let Some(slot) = self.channel_slot("direct-tcpip", ChannelKind::Control) else {
                    reply.reject(ChannelOpenFailure::ResourceShortage).await;
                    return Ok(());
                };
                let hub = self.shared.hub.clone();
                let info = hub::ControlInfo {
                    remote_addr: self.peer.remote_addr,
                    transport: self.peer.transport.to_string(),
                    endpoint_id: self.peer.endpoint_id.clone(),
                    key_fingerprint: self.key_fingerprint.clone(),
                };
                tokio::spawn(async move {
                    let _slots = (slot, control);
                    reply.accept().await;
                    // Whoever ends up holding the stream drops it on the runtime.
                    hub.accept_channel(Box::new(channel.into_stream()), info)
                        .await;
                });
                return Ok(());
            }
            Decision::Udpgw => {
                let Some(policy) = self.policy().cloned() else {
                    prohibit(reply).await;
                    return Ok(());
                };
                let Some(slot) = self.channel_slot("direct-tcpip", ChannelKind::Udpgw) else {
                    reply.reject(ChannelOpenFailure::ResourceShortage).await;
                    return Ok(());
                };
                let service = udpgw::UdpgwChannel {
                    policy,
                    limits: udpgw::UdpgwLimits::from_options(&self.shared.options),
                    session_flows: self.udp_flows.clone(),
                    remote_addr: self.peer.log_addr(),
                };
                tokio::spawn(async move {
                    let _slot = slot;
                    reply.accept().await;
                    udpgw::serve(channel.into_stream(), service).await;
                });
                return Ok(());
            }
            other => {
                self.refused("direct-tcpip", other, reply).await;
                return Ok(());
            }
        };
        let Some(slot) = self.channel_slot("direct-tcpip", ChannelKind::Tcp) else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let timeout = self.shared.options.connect_timeout;
        let proxy = self.shared.options.proxy.clone();
        connect_and_splice(channel, reply, slot, async move {
            outbound::connect_tcp(proxy.as_ref(), &host, port, timeout).await
        });
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        channel: Channel<Msg>,
        socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        let rules = match decide::direct_streamlocal(self.policy(), self.rules()) {
            Decision::DialSocket { rules } => rules,
            other => {
                self.refused("direct-streamlocal", other, reply).await;
                return Ok(());
            }
        };
        let Some(slot) = self.channel_slot("direct-streamlocal", ChannelKind::Unix) else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let path = socket_path.to_string();
        let timeout = self.shared.options.connect_timeout;
        let remote_addr = self.peer.log_addr();
        tokio::spawn(async move {
            let _slot = slot;
            match connect_allowed_socket(&path, &rules, timeout).await {
                Ok(mut target) => {
                    reply.accept().await;
                    let mut channel = channel.into_stream();
                    let _ = crate::io::splice(&mut channel, &mut target).await;
                }
                Err(true) => {
                    tracing::info!(
                        remote_addr = %remote_addr,
                        channel = %"direct-streamlocal",
                        reason = %"socket path not permitted",
                        "channel refused"
                    );
                    prohibit(reply).await;
                }
                Err(false) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
            }
        });
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        let Some(policy) = self.policy() else {
            return Ok(false);
        };
        let Ok(port16) = u16::try_from(*port) else {
            return Ok(false);
        };
        // `udp:<address>`: wraith's client asking for a UDP socket.
        let (proto, listen) = match address.strip_prefix("udp:") {
            Some(rest) => (Proto::Udp, rest),
            None => (Proto::Tcp, address),
        };
        // Judge the address that will really be bound, not the text.
        let Some(bind_ip) = self.remote_bind_ip(listen).await else {
            self.refuse("tcpip-forward", "listen address does not resolve");
            return Ok(false);
        };
        if let Err(reason) = policy.may_listen(listen, bind_ip, port16) {
            self.refuse("tcpip-forward", reason);
            return Ok(false);
        }
        let owner = self.key_fingerprint.clone();
        match self
            .forwards
            .start(proto, address, bind_ip, port16, &owner, session.handle())
            .await
        {
            Ok(bound) => {
                *port = bound;
                tracing::debug!(remote_addr = %self.peer.log_addr(), "remote forward opened");
                Ok(true)
            }
            Err(e) => {
                tracing::info!(remote_addr = %self.peer.log_addr(), reason = %e, "remote forward refused");
                Ok(false)
            }
        }
    }

    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        _session: &mut Session,
    ) -> Result<bool, Self::Error> {
        Ok(self.forwards.cancel(address, port))
    }

    async fn channel_close(
        &mut self,
        _channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Refuse a channel as not permitted, the answer for every kind wraith
/// does not carry.
async fn prohibit(reply: ChannelOpenHandle) {
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
}

#[cfg(test)]
mod tests {
    use super::log_safe;

    #[test]
    fn log_safe_neutralises_injection() {
        assert_eq!(log_safe("bob"), "bob");
        assert_eq!(log_safe("a b\nresult=accept"), "a?b?result?accept");
        assert_eq!(log_safe(""), "-");
        assert_eq!(log_safe(&"x".repeat(100)).len(), 64);
    }
}
