//! UDP over a udpgw stream, the parts both ends share: reading and writing
//! frames (`proto::udpgw`), and the relay between one local UDP socket and
//! one channel, where every source address of the socket is a flow. The
//! client's `--forward udp:…` and the server's `--remote-forward udp:…`
//! listeners are such relays; the far end of each (the server's udpgw
//! service, the client's remote-forward target) gives each flow a socket of
//! its own.
//!
//! A datagram that cannot be carried now is dropped, as UDP may be: nothing
//! here queues without bound.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use crate::proto::socks5::TargetAddr;
use crate::proto::udpgw::{self, Frame};

/// The largest datagram read from a local socket (UDP's own limit).
pub(crate) const RECV_BUF: usize = 65_536;
/// Sources a relay keeps a flow for at once; the one idle longest makes
/// room for a new one.
pub(crate) const MAX_RELAY_FLOWS: usize = 256;
/// A source idle this long gives up its flow.
pub(crate) const FLOW_IDLE: Duration = Duration::from_secs(120);

/// Decodes frames from a udpgw stream and hands each to `on_frame` until
/// the stream ends. A frame that does not make sense costs only itself.
pub(crate) async fn read_frames<R: AsyncRead + Unpin>(
    mut r: R,
    mut on_frame: impl FnMut(Frame),
) -> io::Result<()> {
    // A partial frame is shorter than MAX_FRAME, so the buffer stays under
    // MAX_FRAME plus one read.
    let mut buf = Vec::with_capacity(2 * RECV_BUF);
    let mut chunk = vec![0u8; RECV_BUF];
    loop {
        let mut at = 0;
        while let Some((frame, used)) = udpgw::decode(&buf[at..]) {
            at += used;
            match frame {
                Ok(f) => on_frame(f),
                Err(e) => tracing::debug!(error = %e, "udp: frame skipped"),
            }
        }
        buf.drain(..at);
        let n = r.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes one frame, encoded in `out`; a frame that cannot be encoded is
/// dropped.
pub(crate) async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    out: &mut Vec<u8>,
    frame: &Frame,
) -> io::Result<()> {
    out.clear();
    match udpgw::encode(frame, out) {
        Ok(()) => w.write_all(out).await,
        Err(e) => {
            tracing::debug!(error = %e, "udp: datagram dropped");
            Ok(())
        }
    }
}

/// What a relay's DATA frames name as their peer.
#[derive(Debug, Clone)]
pub(crate) enum PeerField {
    /// Every datagram goes to this destination (a local forward).
    Fixed(TargetAddr),
    /// Each datagram names the source it came from (a remote forward).
    Source,
}

/// Serves `socket` over channels opened on demand, for as long as the
/// task runs: waits for a datagram, asks `open` for a channel for its
/// source (`None`: drop it, `open` has said why), relays from that datagram
/// on until the channel ends, and starts over. A listener nobody sends to
/// holds no channel. `what` names the listener in debug lines.
pub(crate) async fn relay_on_demand<S, F>(
    socket: &UdpSocket,
    what: &'static str,
    peer: PeerField,
    mut open: impl FnMut(SocketAddr) -> F,
) where
    S: AsyncRead + AsyncWrite,
    F: Future<Output = Option<S>>,
{
    let mut buf = vec![0u8; RECV_BUF];
    loop {
        let (n, src) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from an earlier send surface here.
                tracing::debug!(error = %e, listener = what, "udp receive failed");
                continue;
            }
        };
        let Some(channel) = open(src).await else {
            continue;
        };
        let first = (buf[..n].to_vec(), src);
        match relay(socket, channel, first, peer.clone()).await {
            Ok(()) => tracing::debug!(listener = what, "udp channel closed"),
            Err(e) => tracing::debug!(error = %e, listener = what, "udp channel ended"),
        }
    }
}

/// Relays between `socket` and a udpgw stream until the stream ends,
/// starting with `first` (a datagram and its source, already read). Each
/// source address is a flow; answers on a flow go back to its source.
pub(crate) async fn relay<S: AsyncRead + AsyncWrite>(
    socket: &UdpSocket,
    stream: S,
    first: (Vec<u8>, SocketAddr),
    peer: PeerField,
) -> io::Result<()> {
    let flows = Mutex::new(Flows::default());
    let (rd, mut wr) = tokio::io::split(stream);
    let up = async {
        let mut out = Vec::new();
        let mut send = async |payload: Vec<u8>, src: SocketAddr| {
            let conn_id = match flows.lock() {
                Ok(mut f) => f.id_for(src, Instant::now()),
                Err(_) => return Ok(()),
            };
            let peer = match &peer {
                PeerField::Fixed(to) => to.clone(),
                PeerField::Source => TargetAddr::Ip(src),
            };
            let frame = Frame::Data {
                conn_id,
                peer,
                payload,
            };
            write_frame(&mut wr, &mut out, &frame).await
        };
        send(first.0, first.1).await?;
        let mut buf = vec![0u8; RECV_BUF];
        loop {
            match socket.recv_from(&mut buf).await {
                Ok((n, src)) => send(buf[..n].to_vec(), src).await?,
                // ICMP errors from an earlier send surface here.
                Err(e) => tracing::debug!(error = %e, "udp: receive failed"),
            }
        }
    };
    let down = read_frames(rd, |frame| {
        if let Frame::Data {
            conn_id, payload, ..
        } = frame
        {
            let to = flows.lock().ok().and_then(|f| f.addr_of(conn_id));
            if let Some(to) = to {
                // A full socket buffer drops the datagram, as UDP does.
                let _ = socket.try_send_to(&payload, to);
            }
        }
    });
    tokio::select! {
        r = up => r,
        r = down => r,
    }
}

/// A relay's flows: one `conn_id` per source address, at most
/// [`MAX_RELAY_FLOWS`], the longest idle making room.
#[derive(Default)]
pub(crate) struct Flows {
    by_addr: HashMap<SocketAddr, (u16, Instant)>,
    by_id: HashMap<u16, SocketAddr>,
    next: u16,
}

impl Flows {
    /// The flow of `src`, made if new.
    pub(crate) fn id_for(&mut self, src: SocketAddr, now: Instant) -> u16 {
        if let Some((id, seen)) = self.by_addr.get_mut(&src) {
            *seen = now;
            return *id;
        }
        self.by_addr.retain(|_, (id, seen)| {
            let keep = now.duration_since(*seen) < FLOW_IDLE;
            if !keep {
                self.by_id.remove(id);
            }
            keep
        });
        if self.by_addr.len() >= MAX_RELAY_FLOWS {
            let oldest = self
                .by_addr
                .iter()
                .min_by_key(|(_, (_, seen))| *seen)
                .map(|(a, (id, _))| (*a, *id));
            if let Some((addr, id)) = oldest {
                self.by_addr.remove(&addr);
                self.by_id.remove(&id);
            }
        }
        // At most MAX_RELAY_FLOWS ids are taken, so a free one is near.
        let mut id = self.next;
        while self.by_id.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next = id.wrapping_add(1);
        self.by_addr.insert(src, (id, now));
        self.by_id.insert(id, src);
        id
    }

    /// The source of flow `id`, if it is still kept.
    pub(crate) fn addr_of(&self, id: u16) -> Option<SocketAddr> {
        self.by_id.get(&id).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn each_source_keeps_its_flow_and_the_longest_idle_makes_room() {
        let mut f = Flows::default();
        let t0 = Instant::now();
        let a = f.id_for(addr(1), t0);
        let b = f.id_for(addr(2), t0);
        assert_ne!(a, b);
        assert_eq!(f.id_for(addr(1), t0), a);
        assert_eq!(f.addr_of(b), Some(addr(2)));
        for p in 3..=(MAX_RELAY_FLOWS as u16 + 1) {
            // Source 1 stays busy; source 2 is the one left idle.
            f.id_for(addr(1), t0 + Duration::from_millis(u64::from(p)));
            f.id_for(addr(p), t0 + Duration::from_millis(u64::from(p)));
        }
        assert_eq!(f.by_addr.len(), MAX_RELAY_FLOWS);
        assert_eq!(f.addr_of(b), None);
        assert_eq!(f.addr_of(a), Some(addr(1)));
        // After FLOW_IDLE every quiet source is gone.
        let later = t0 + FLOW_IDLE + Duration::from_secs(1);
        f.id_for(addr(9999), later);
        assert_eq!(f.by_addr.len(), 1);
    }

    #[tokio::test]
    async fn frames_are_read_across_reads_and_bad_ones_skipped() {
        let (mut a, b) = tokio::io::duplex(64);
        let mut wire = Vec::new();
        let big = Frame::Data {
            conn_id: 3,
            peer: TargetAddr::Ip(addr(53)),
            payload: vec![7; 1000],
        };
        udpgw::encode(&big, &mut wire).unwrap();
        wire.extend_from_slice(&[0, 3, 0x40, 0, 1]);
        udpgw::encode(&Frame::Error { conn_id: 3 }, &mut wire).unwrap();
        let writer = tokio::spawn(async move {
            a.write_all(&wire).await.unwrap();
        });
        let mut got = Vec::new();
        read_frames(b, |f| got.push(f)).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got, [big, Frame::Error { conn_id: 3 }]);
    }

    #[tokio::test]
    async fn a_relay_keeps_sources_apart() {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let local = socket.local_addr().unwrap();
        let (ours, mut theirs) = tokio::io::duplex(1 << 16);
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let first = (b"from a".to_vec(), a.local_addr().unwrap());
        let relay =
            tokio::spawn(async move { relay(&socket, ours, first, PeerField::Source).await });
        b.send_to(b"from b", local).await.unwrap();
        // The far end sees two flows, each naming its source.
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while seen.len() < 2 {
            let n = theirs.read(&mut chunk).await.unwrap();
            buf.extend_from_slice(&chunk[..n]);
            while let Some((f, used)) = udpgw::decode(&buf) {
                buf.drain(..used);
                seen.push(f.unwrap());
            }
        }
        let mut ids = HashMap::new();
        for f in &seen {
            let Frame::Data {
                conn_id,
                peer: TargetAddr::Ip(src),
                payload,
            } = f
            else {
                panic!("{f:?}")
            };
            ids.insert(*src, *conn_id);
            let expect: &[u8] = if *src == a.local_addr().unwrap() {
                b"from a"
            } else {
                b"from b"
            };
            assert_eq!(payload, expect);
        }
        assert_eq!(ids.len(), 2);
        // An answer on b's flow goes to b only.
        let answer = Frame::Data {
            conn_id: ids[&b.local_addr().unwrap()],
            peer: TargetAddr::Ip(addr(1)),
            payload: b"to b".to_vec(),
        };
        let mut wire = Vec::new();
        udpgw::encode(&answer, &mut wire).unwrap();
        theirs.write_all(&wire).await.unwrap();
        let mut got = [0u8; 64];
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&got[..n], from), (&b"to b"[..], local));
        drop(theirs);
        let ended = tokio::time::timeout(Duration::from_secs(5), relay).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    }
}
