//! The in-process event hub behind `wraith-control:0` channels (SPEC §7).
//!
//! Every control channel, and every embedder that calls
//! [`EventHub::join`], is a *member*. A member subscribes to event types
//! (`"*"` for all); an event published by one member reaches every *other*
//! member subscribed to its type, re-encoded with a `"sender"` field the hub
//! sets from who the member is (the key fingerprint of a control channel),
//! so a receiver can trust it: a publisher cannot forge it. Each member has
//! a bounded queue (frames and bytes); a member that falls behind is
//! disconnected rather than allowed to grow memory.
//!
//! Logs name the member (a remote address) and counts, never an event's
//! type, id or payload.
//!
//! A hub may also have a [`HubBackend`]: every event published here is
//! handed to it as well, and events it brings from elsewhere (another
//! server) are delivered with [`EventHub::deliver_remote`] to the members
//! here, never back to the backend. `hub_nats` is the NATS one.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

pub use crate::proto::frame::{
    CONTROL_HOST, CONTROL_PORT, CONTROL_PORT_OPENSSH, is_control_target,
};
use crate::proto::frame::{Frame, FrameDecoder, FrameError, MAX_FRAME_LEN};

/// Bytes a relayed frame may grow by when the hub adds `"sender"` (a
/// `SHA256:` fingerprint is 50 characters) and re-encodes it.
const SENDER_ROOM: usize = 256;

/// Control message: subscribe to the event type in the payload (`"*"`: all).
pub const SUBSCRIBE: &str = "__subscribe";
/// Control message: undo a [`SUBSCRIBE`] of the same payload.
pub const UNSUBSCRIBE: &str = "__unsubscribe";
/// The hub's answer to [`SUBSCRIBE`] (same id and payload), sent once the
/// subscription is in force.
pub const SUBSCRIBED: &str = "__subscribed";
/// The hub's answer to [`UNSUBSCRIBE`].
pub const UNSUBSCRIBED: &str = "__unsubscribed";
/// Sent by the hub just before it closes a channel for a protocol error;
/// the payload says why.
pub const ERROR: &str = "__error";

/// Bounds on what one member may cost.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HubLimits {
    /// Largest frame body accepted from a channel.
    pub max_frame_len: usize,
    /// Frames waiting for one member before it is disconnected.
    pub queue_frames: usize,
    /// Bytes waiting for one member before it is disconnected.
    pub queue_bytes: usize,
    /// Distinct subscriptions one member may hold.
    pub max_subscriptions: usize,
}

impl Default for HubLimits {
    fn default() -> Self {
        HubLimits {
            max_frame_len: MAX_FRAME_LEN,
            queue_frames: 1024,
            queue_bytes: 8 * 1024 * 1024,
            max_subscriptions: 1024,
        }
    }
}

/// Why a member left the hub (or a control channel ended).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// The member did not keep up: its queue went over the limit.
    #[error("subscriber queue overflow ({frames} frames, {bytes} bytes waiting)")]
    Overflow {
        /// Frames that were waiting.
        frames: usize,
        /// Bytes that were waiting.
        bytes: usize,
    },
    /// The peer sent a frame the codec refused.
    #[error("{0}")]
    Frame(#[from] FrameError),
    /// The peer sent a frame the hub does not accept.
    #[error("{0}")]
    Protocol(&'static str),
    /// Reading or writing the channel failed.
    #[error("channel i/o failed: {0}")]
    Io(String),
}

/// Carries this hub's events beyond the process, say to the other servers
/// of a fleet. [`EventHub::set_backend`] installs one.
pub trait HubBackend: Send + Sync + std::fmt::Debug {
    /// An event was published on this hub (by a member or by the server):
    /// `body` is its JSON, `"sender"` already stamped. Called on the
    /// publisher's path, so it must not block: queue or drop.
    fn publish(&self, kind: &str, body: &[u8]);
}

/// A control channel's byte stream, as handed to an embedder.
pub type ControlStream = Box<dyn crate::transport::TransportStream>;

/// Who opened a control channel.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ControlInfo {
    /// The client's address, when the transport has one.
    pub remote_addr: Option<std::net::SocketAddr>,
    /// The transport it came over (`tcp`, `tls`, `iroh`).
    pub transport: String,
    /// The client's iroh endpoint id (iroh only).
    pub endpoint_id: Option<String>,
    /// `SHA256:…` of the key it authenticated with.
    pub key_fingerprint: String,
}

/// A shared, cheaply cloned event hub. One lives in every
/// [`Server`](super::Server); [`Server::hub`](super::Server::hub) returns it.
#[derive(Clone, Debug)]
pub struct EventHub {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limits: HubLimits,
    members: Mutex<HashMap<u64, Arc<MemberState>>>,
    next_id: AtomicU64,
    overflows: AtomicU64,
    /// Set by [`EventHub::take_channels`]: new control channels go there.
    takeover: Mutex<Option<mpsc::Sender<(ControlStream, ControlInfo)>>>,
    /// Where published events also go ([`EventHub::set_backend`]).
    backend: Mutex<Option<Arc<dyn HubBackend>>>,
}

#[derive(Debug)]
struct MemberState {
    id: u64,
    /// For logs: who this is (a remote address or an embedder's label).
    label: String,
    /// Stamped as `"sender"` on the events it publishes.
    sender: Option<String>,
    subs: Mutex<Subs>,
    queue: Mutex<Queue>,
    ready: Notify,
}

#[derive(Debug, Default)]
struct Subs {
    all: bool,
    types: HashSet<String>,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Arc<[u8]>>,
    bytes: usize,
    closed: Option<HubError>,
}

impl Default for EventHub {
    fn default() -> Self {
        Self::new(HubLimits::default())
    }
}

impl EventHub {
    /// An empty hub with these limits.
    pub fn new(limits: HubLimits) -> Self {
        EventHub {
            inner: Arc::new(Inner {
                limits,
                members: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                overflows: AtomicU64::new(0),
                takeover: Mutex::new(None),
                backend: Mutex::new(None),
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &HubLimits {
        &self.inner.limits
    }

    /// Join as a member. `label` names the member in logs (say, a remote
    /// address); it never appears on the wire. Its events carry no
    /// `"sender"`. Leaving is dropping.
    pub fn join(&self, label: impl Into<String>) -> HubMember {
        self.join_with_sender(label, None)
    }

    /// [`EventHub::join`] as `sender`: every event this member publishes
    /// carries `"sender": sender`.
    pub fn join_as(&self, label: impl Into<String>, sender: impl Into<String>) -> HubMember {
        self.join_with_sender(label, Some(sender.into()))
    }

    fn join_with_sender(&self, label: impl Into<String>, sender: Option<String>) -> HubMember {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(MemberState {
            id,
            label: label.into(),
            sender,
            subs: Mutex::new(Subs::default()),
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
        });
        if let Ok(mut m) = self.inner.members.lock() {
            m.insert(id, state.clone());
        }
        HubMember {
            hub: self.clone(),
            state,
        }
    }

    /// From now on, hand each new control channel to the returned receiver
    /// instead of serving it with the hub (the embedder speaks the frames
    /// itself). At most `backlog` channels wait there; more are refused.
    /// Dropping the receiver, or [`EventHub::release_channels`], returns
    /// new channels to the hub.
    pub fn take_channels(&self, backlog: usize) -> mpsc::Receiver<(ControlStream, ControlInfo)> {
        let (tx, rx) = mpsc::channel(backlog.max(1));
        if let Ok(mut t) = self.inner.takeover.lock() {
            *t = Some(tx);
        }
        rx
    }

    /// Undo [`EventHub::take_channels`]; its receiver then sees the end.
    pub fn release_channels(&self) {
        if let Ok(mut t) = self.inner.takeover.lock() {
            t.take();
        }
    }

    /// Serve a new control channel: hand it to the embedder that took
    /// channels, or run it on the hub.
    pub(crate) async fn accept_channel(&self, stream: ControlStream, info: ControlInfo) {
        let label = match (&info.remote_addr, &info.endpoint_id) {
            (Some(a), _) => a.ip().to_string(),
            (None, Some(id)) => id.clone(),
            (None, None) => "-".into(),
        };
        let sender = Some(info.key_fingerprint.clone()).filter(|f| !f.is_empty());
        let taker = self.inner.takeover.lock().ok().and_then(|t| t.clone());
        let stream = match taker {
            Some(tx) => match tx.try_send((stream, info)) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(remote_addr = %label, "control channel refused: embedder backlog full");
                    return;
                }
                Err(mpsc::error::TrySendError::Closed((stream, _))) => {
                    self.release_channels();
                    stream
                }
            },
            None => stream,
        };
        let _ = self.serve_member(stream, &label, sender).await;
    }

    /// Members currently joined.
    pub fn member_count(&self) -> usize {
        self.inner.members.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Members disconnected so far for falling behind.
    pub fn overflow_count(&self) -> u64 {
        self.inner.overflows.load(Ordering::Relaxed)
    }

    /// Publish from the server itself: every member subscribed to the
    /// frame's type gets it (and the backend, if there is one). Returns how
    /// many members here it was queued for.
    pub fn publish(&self, frame: &Frame) -> Result<usize, FrameError> {
        let wire: Arc<[u8]> = frame
            .encode_with_max(self.inner.limits.max_frame_len)?
            .into();
        self.to_backend(&frame.kind, &wire);
        Ok(self.deliver(None, &frame.kind, &wire))
    }

    /// Hand every event published from now on to `backend` as well
    /// (`None`: stop). Replaces the one before.
    pub fn set_backend(&self, backend: Option<Arc<dyn HubBackend>>) {
        if let Ok(mut b) = self.inner.backend.lock() {
            *b = backend;
        }
    }

    /// Whether a backend is installed.
    pub fn has_backend(&self) -> bool {
        self.inner
            .backend
            .lock()
            .map(|b| b.is_some())
            .unwrap_or(false)
    }

    /// Deliver an event that was published elsewhere (a backend brings it)
    /// to the members here subscribed to its type; it does not go back to
    /// the backend. `body` is the event's JSON, `"sender"` as the other
    /// side stamped it. The same limits as for a channel apply, and
    /// reserved (`__`) types are refused. Returns how many members it was
    /// queued for.
    pub fn deliver_remote(&self, body: &[u8]) -> Result<usize, HubError> {
        let max = self.inner.limits.max_frame_len.saturating_add(SENDER_ROOM);
        if body.len() > max {
            return Err(FrameError::Oversize {
                len: body.len() as u64,
                max,
            }
            .into());
        }
        let frame = Frame::from_json(body)?;
        if frame.kind.starts_with("__") {
            return Err(HubError::Protocol(
                "event types starting with __ are reserved",
            ));
        }
        let wire: Arc<[u8]> = frame.encode_with_max(max)?.into();
        Ok(self.deliver(None, &frame.kind, &wire))
    }

    fn to_backend(&self, kind: &str, wire: &[u8]) {
        let backend = self.inner.backend.lock().ok().and_then(|b| b.clone());
        if let Some(b) = backend {
            let body = wire
                .get(crate::proto::frame::LEN_PREFIX..)
                .unwrap_or_default();
            b.publish(kind, body);
        }
    }

    /// Queue `wire` for every member but `from` subscribed to `kind`.
    fn deliver(&self, from: Option<u64>, kind: &str, wire: &Arc<[u8]>) -> usize {
        let targets: Vec<Arc<MemberState>> = match self.inner.members.lock() {
            Ok(m) => m
                .values()
                .filter(|s| Some(s.id) != from && s.wants(kind))
                .cloned()
                .collect(),
            Err(_) => return 0,
        };
        let mut delivered = 0;
        for t in targets {
            match self.push(&t, wire.clone()) {
                Ok(()) => delivered += 1,
                Err(Some(e)) => {
                    self.inner.overflows.fetch_add(1, Ordering::Relaxed);
                    self.remove(t.id);
                    tracing::warn!(
                        remote_addr = %t.label,
                        reason = %e,
                        "control channel subscriber disconnected"
                    );
                }
                Err(None) => {}
            }
        }
        delivered
    }

    /// Queue one frame for a member. `Err(Some(_))`: this push overflowed
    /// it (now closed); `Err(None)`: it was closed already.
    fn push(&self, member: &MemberState, wire: Arc<[u8]>) -> Result<(), Option<HubError>> {
        let limits = &self.inner.limits;
        let Ok(mut q) = member.queue.lock() else {
            return Err(None);
        };
        if q.closed.is_some() {
            return Err(None);
        }
        if q.frames.len() + 1 > limits.queue_frames || q.bytes + wire.len() > limits.queue_bytes {
            let e = HubError::Overflow {
                frames: q.frames.len(),
                bytes: q.bytes,
            };
            // Free the memory now; the member's reader learns why.
            q.frames = VecDeque::new();
            q.bytes = 0;
            q.closed = Some(e.clone());
            drop(q);
            member.ready.notify_one();
            return Err(Some(e));
        }
        q.bytes += wire.len();
        q.frames.push_back(wire);
        drop(q);
        member.ready.notify_one();
        Ok(())
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.inner.members.lock() {
            m.remove(&id);
        }
    }

    /// Run one control channel on `stream` until it ends: frames read from
    /// it are control messages or events to publish; events for it are
    /// written to it. Returns why it ended (`Ok` for an orderly close by the
    /// peer). A bad frame ends only this channel, after an [`ERROR`] frame.
    ///
    /// When the peer sends EOF, frames already queued for it are written,
    /// then the channel is closed.
    pub async fn serve_stream<S>(&self, stream: S, label: &str) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.serve_member(stream, label, None).await
    }

    /// [`EventHub::serve_stream`] for a channel whose events are stamped
    /// with `"sender": sender` (say, the peer's key fingerprint from its
    /// [`ControlInfo`]).
    pub async fn serve_stream_as<S>(
        &self,
        stream: S,
        label: &str,
        sender: &str,
    ) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.serve_member(stream, label, Some(sender.to_string()))
            .await
    }

    async fn serve_member<S>(
        &self,
        stream: S,
        label: &str,
        sender: Option<String>,
    ) -> Result<(), HubError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let member = self.join_with_sender(label, sender);
        let (mut rd, mut wr) = tokio::io::split(stream);
        let result = {
            let reading = read_frames(&member, &mut rd, self.inner.limits.max_frame_len);
            let writing = async {
                loop {
                    let wire = member.recv_wire().await?;
                    wr.write_all(&wire)
                        .await
                        .map_err(|e| HubError::Io(e.to_string()))?;
                }
            };
            tokio::select! {
                r = reading => r,
                w = writing => w,
            }
        };
        // Flush what is already queued (peer EOF) or say why we close.
        let tail = async {
            match &result {
                Ok(()) => {
                    while let Some(wire) = member.try_recv_wire() {
                        wr.write_all(&wire).await?;
                    }
                }
                Err(e @ (HubError::Frame(_) | HubError::Protocol(_))) => {
                    let note = Frame::new(ERROR, "", Value::String(e.to_string()));
                    if let Ok(bytes) = note.encode() {
                        wr.write_all(&bytes).await?;
                    }
                }
                Err(_) => {}
            }
            wr.shutdown().await
        };
        let _ = tokio::time::timeout(Duration::from_secs(2), tail).await;
        drop(member);
        match &result {
            Ok(()) | Err(HubError::Overflow { .. }) => {}
            Err(e) => {
                tracing::info!(remote_addr = %label, reason = %e, "control channel closed");
            }
        }
        result
    }
}

/// Read frames until EOF or an error, acting on each.
async fn read_frames<R: AsyncRead + Unpin>(
    member: &HubMember,
    rd: &mut R,
    max: usize,
) -> Result<(), HubError> {
    let mut decoder = FrameDecoder::with_max_len(max);
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = rd
            .read(&mut buf)
            .await
            .map_err(|e| HubError::Io(e.to_string()))?;
        let Some(chunk) = buf.get(..n).filter(|c| !c.is_empty()) else {
            decoder.finish()?;
            return Ok(());
        };
        decoder.push(chunk);
        while let Some(decoded) = decoder.next_frame()? {
            member.handle(decoded.frame)?;
        }
    }
}

impl MemberState {
    fn wants(&self, kind: &str) -> bool {
        self.subs
            .lock()
            .map(|s| s.all || s.types.contains(kind))
            .unwrap_or(false)
    }
}

/// One member of an [`EventHub`]: subscribe, publish, receive. Dropping it
/// leaves the hub.
#[derive(Debug)]
pub struct HubMember {
    hub: EventHub,
    state: Arc<MemberState>,
}

impl Drop for HubMember {
    fn drop(&mut self) {
        self.hub.remove(self.state.id);
    }
}

impl HubMember {
    /// Receive events of type `kind` (`"*"`: every type) from now on.
    pub fn subscribe(&self, kind: &str) -> Result<(), HubError> {
        let max = self.hub.inner.limits.max_subscriptions;
        let mut s = self
            .state
            .subs
            .lock()
            .map_err(|_| HubError::Protocol("hub state poisoned"))?;
        if kind == "*" {
            s.all = true;
        } else if !s.types.contains(kind) {
            if s.types.len() >= max {
                return Err(HubError::Protocol("too many subscriptions"));
            }
            s.types.insert(kind.to_string());
        }
        Ok(())
    }

    /// Stop receiving events of type `kind` (`"*"` undoes a `"*"`
    /// subscription only).
    pub fn unsubscribe(&self, kind: &str) {
        if let Ok(mut s) = self.state.subs.lock() {
            if kind == "*" {
                s.all = false;
            } else {
                s.types.remove(kind);
            }
        }
    }

    /// Publish an event to every *other* member subscribed to its type,
    /// with `"sender"` set to this member's (or removed, for a member
    /// joined without one). Returns how many it was queued for.
    pub fn publish(&self, frame: &Frame) -> Result<usize, HubError> {
        if frame.kind.starts_with("__") {
            return Err(HubError::Protocol(
                "event types starting with __ are reserved",
            ));
        }
        self.relay(frame.clone())
    }

    /// Stamp `frame` with this member as its sender and deliver it.
    fn relay(&self, mut frame: Frame) -> Result<usize, HubError> {
        frame.sender = self.state.sender.clone();
        // The publisher's frame fit the limit; leave room for the stamp.
        let max = self
            .hub
            .inner
            .limits
            .max_frame_len
            .saturating_add(SENDER_ROOM);
        let wire: Arc<[u8]> = frame.encode_with_max(max)?.into();
        self.hub.to_backend(&frame.kind, &wire);
        Ok(self.hub.deliver(Some(self.state.id), &frame.kind, &wire))
    }

    /// Act on one frame received from this member's channel.
    fn handle(&self, frame: Frame) -> Result<(), HubError> {
        match frame.kind.as_str() {
            SUBSCRIBE | UNSUBSCRIBE => {
                let Value::String(kind) = &frame.payload else {
                    return Err(HubError::Protocol(
                        "__subscribe and __unsubscribe need a string payload",
                    ));
                };
                let ack = if frame.kind == SUBSCRIBE {
                    self.subscribe(kind)?;
                    SUBSCRIBED
                } else {
                    self.unsubscribe(kind);
                    UNSUBSCRIBED
                };
                let ack = Frame::new(ack, frame.id, frame.payload).encode()?;
                match self.hub.push(&self.state, ack.into()) {
                    Ok(()) | Err(None) => Ok(()),
                    Err(Some(e)) => Err(e),
                }
            }
            k if k.starts_with("__") => Err(HubError::Protocol(
                "unknown control message (types starting with __ are reserved)",
            )),
            _ => {
                self.relay(frame)?;
                Ok(())
            }
        }
    }

    /// The next frame for this member as wire bytes (prefix + JSON); an
    /// error once it has been disconnected.
    pub async fn recv_wire(&self) -> Result<Arc<[u8]>, HubError> {
        loop {
            let notified = self.state.ready.notified();
            if let Some(w) = self.pop()? {
                return Ok(w);
            }
            notified.await;
        }
    }

    /// The next frame for this member.
    pub async fn recv(&self) -> Result<Frame, HubError> {
        let wire = self.recv_wire().await?;
        let body = wire
            .get(crate::proto::frame::LEN_PREFIX..)
            .unwrap_or_default();
        Ok(Frame::from_json(body)?)
    }

    fn try_recv_wire(&self) -> Option<Arc<[u8]>> {
        self.pop().ok().flatten()
    }

    fn pop(&self) -> Result<Option<Arc<[u8]>>, HubError> {
        let mut q = self
            .state
            .queue
            .lock()
            .map_err(|_| HubError::Protocol("hub state poisoned"))?;
        if let Some(e) = &q.closed {
            return Err(e.clone());
        }
        let w = q.frames.pop_front();
        if let Some(w) = &w {
            q.bytes -= w.len();
        }
        Ok(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hub(frames: usize, bytes: usize) -> EventHub {
        EventHub::new(HubLimits {
            queue_frames: frames,
            queue_bytes: bytes,
            ..HubLimits::default()
        })
    }

    #[tokio::test]
    async fn events_reach_other_subscribers_only() {
        let hub = EventHub::default();
        let a = hub.join("a");
        let b = hub.join("b");
        let c = hub.join("c");
        a.subscribe("*").unwrap();
        b.subscribe("chat").unwrap();
        let f = Frame::new("chat", "1", json!({"x": 1}));
        assert_eq!(a.publish(&f).unwrap(), 1);
        assert_eq!(b.recv().await.unwrap(), f);
        assert!(a.try_recv_wire().is_none(), "sender got its own event");
        assert!(c.try_recv_wire().is_none(), "non-subscriber got an event");
        b.unsubscribe("chat");
        assert_eq!(c.publish(&f).unwrap(), 1); // only a, via "*"
        assert!(b.try_recv_wire().is_none());
        assert_eq!(a.recv().await.unwrap(), f);
    }

    #[tokio::test]
    async fn overflow_disconnects_only_the_slow_member() {
        let hub = hub(3, 1 << 20);
        let slow = hub.join("slow");
        let fast = hub.join("fast");
        slow.subscribe("t").unwrap();
        fast.subscribe("t").unwrap();
        let f = Frame::new("t", "", json!(1));
        for _ in 0..3 {
            hub.publish(&f).unwrap();
            fast.recv().await.unwrap();
        }
        assert_eq!(hub.publish(&f).unwrap(), 1);
        assert!(matches!(
            slow.recv_wire().await,
            Err(HubError::Overflow { frames: 3, .. })
        ));
        assert_eq!(hub.overflow_count(), 1);
        assert_eq!(hub.member_count(), 1);
        assert_eq!(fast.recv().await.unwrap(), f);
    }

    #[tokio::test]
    async fn byte_budget_bounds_the_queue() {
        let hub = hub(1000, 100);
        let m = hub.join("m");
        m.subscribe("t").unwrap();
        let f = Frame::new("t", "", json!("x".repeat(80)));
        assert_eq!(
            hub.publish(&f).unwrap(),
            0,
            "a 90+ byte frame is over budget at once"
        );
        assert!(m.recv_wire().await.is_err());
    }

    #[tokio::test]
    async fn events_carry_the_hub_stamped_sender_not_the_forged_one() {
        let hub = EventHub::default();
        let alice = hub.join_as("a", "SHA256:alice");
        let anon = hub.join("anon");
        let rx = hub.join("rx");
        rx.subscribe("*").unwrap();
        let mut forged = Frame::new("t", "1", json!(1));
        forged.sender = Some("SHA256:admin".into());
        alice.publish(&forged).unwrap();
        assert_eq!(
            rx.recv().await.unwrap().sender.as_deref(),
            Some("SHA256:alice")
        );
        anon.publish(&forged).unwrap();
        assert_eq!(rx.recv().await.unwrap().sender, None);
    }

    #[test]
    fn reserved_types_cannot_be_published() {
        let hub = EventHub::default();
        let m = hub.join("m");
        assert!(
            m.publish(&Frame::new("__subscribed", "", json!("x")))
                .is_err()
        );
    }

    #[derive(Debug, Default)]
    struct Recorder(Mutex<Vec<(String, Vec<u8>)>>);

    impl HubBackend for Recorder {
        fn publish(&self, kind: &str, body: &[u8]) {
            self.0.lock().unwrap().push((kind.into(), body.to_vec()));
        }
    }

    #[tokio::test]
    async fn the_backend_gets_every_publish_and_remote_events_stay_local() {
        let hub = EventHub::default();
        let rec = Arc::new(Recorder::default());
        hub.set_backend(Some(rec.clone()));
        let alice = hub.join_as("a", "SHA256:alice");
        let rx = hub.join("rx");
        rx.subscribe("t").unwrap();
        alice.publish(&Frame::new("t", "1", json!(1))).unwrap();
        hub.publish(&Frame::new("t", "2", json!(2))).unwrap();
        let sent = rec.0.lock().unwrap().clone();
        assert_eq!(sent.len(), 2);
        let first = Frame::from_json(&sent[0].1).unwrap();
        assert_eq!(sent[0].0, "t");
        assert_eq!(first.sender.as_deref(), Some("SHA256:alice"));
        assert_eq!(rx.recv().await.unwrap().id, "1");
        assert_eq!(rx.recv().await.unwrap().id, "2");

        // From elsewhere: to local subscribers (sender kept), not back out.
        let remote = br#"{"type":"t","id":"3","payload":3,"sender":"SHA256:bob"}"#;
        assert_eq!(hub.deliver_remote(remote).unwrap(), 1);
        let got = rx.recv().await.unwrap();
        assert_eq!(
            (got.id.as_str(), got.sender.as_deref()),
            ("3", Some("SHA256:bob"))
        );
        assert_eq!(
            rec.0.lock().unwrap().len(),
            2,
            "a remote event went back out"
        );
        assert!(alice.try_recv_wire().is_none());

        // What a broker may not bring in.
        assert!(
            hub.deliver_remote(br#"{"type":"__subscribed","id":"","payload":"t"}"#)
                .is_err()
        );
        assert!(hub.deliver_remote(b"not json").is_err());
        let huge = format!(
            r#"{{"type":"t","id":"","payload":"{}"}}"#,
            "x".repeat(MAX_FRAME_LEN + 300)
        );
        assert!(hub.deliver_remote(huge.as_bytes()).is_err());
        assert!(rx.try_recv_wire().is_none());

        hub.set_backend(None);
        hub.publish(&Frame::new("t", "4", json!(4))).unwrap();
        assert_eq!(rec.0.lock().unwrap().len(), 2);
    }

    #[test]
    fn dropped_members_leave() {
        let hub = EventHub::default();
        let m = hub.join("m");
        assert_eq!(hub.member_count(), 1);
        drop(m);
        assert_eq!(hub.member_count(), 0);
    }
}
