//! The queue from the session loop to one channel's reader (wraith patch).
//!
//! It replaces a bounded `mpsc` whose `send().await` parked the whole
//! session loop when one reader stopped reading. Delivery here never waits:
//! what a channel may hold is bounded by the receive window the session
//! granted, which it replenishes only as the reader takes bytes out
//! (`consumed`), and a peer that sends beyond that window is disconnected
//! by the session. Small data messages are merged so that a peer sending
//! one-byte packets cannot make the queue's overhead exceed its window.
//!
//! The reader side reports what it took; once that reaches the channel's
//! credit threshold it puts the channel on the session's [`CreditQueue`]
//! and wakes the session loop, which sends the WINDOW_ADJUST.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::sync::mpsc::error::{SendError, TrySendError};

use super::ChannelMsg;
use crate::ChannelId;

/// Data messages shorter than this are appended to a queued one.
const MERGE_BELOW: usize = 4096;
/// A merged data message grows up to this size.
const MERGED_MAX: usize = 64 * 1024;
/// Most messages a channel queue holds; only a peer that interleaves
/// thousands of tiny data and extended-data messages into a channel whose
/// reader has stopped gets here, and then the session disconnects it.
pub(crate) const MAX_QUEUED_MESSAGES: usize = 16 * 1024;

/// Channels whose readers consumed enough to deserve a WINDOW_ADJUST, and
/// the wake-up for the session loop. One per session.
#[derive(Debug, Default)]
pub(crate) struct CreditQueue {
    ids: Mutex<Vec<ChannelId>>,
    notify: Notify,
}

impl CreditQueue {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Resolves when a channel was put on the queue since the last call.
    pub(crate) async fn notified(&self) {
        self.notify.notified().await
    }

    /// The channels put on the queue so far (each once).
    pub(crate) fn take(&self) -> Vec<ChannelId> {
        lock(&self.ids).drain(..).collect()
    }

    fn push(&self, id: ChannelId) {
        lock(&self.ids).push(id);
        self.notify.notify_one();
    }
}

/// What a queued message's delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// Queued for the reader; its bytes are credited when the reader takes
    /// them.
    Queued,
    /// Nobody reads this channel any more: the bytes are gone, credit them
    /// now.
    Discarded,
    /// The queue holds [`MAX_QUEUED_MESSAGES`]: the peer floods it.
    Overflow,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<ChannelMsg>,
    /// Data bytes in `queue`.
    queued_bytes: usize,
    /// Data bytes taken by the reader and not yet credited.
    consumed: usize,
    /// `consumed` at which the session is told.
    threshold: usize,
    /// The channel is on the credit queue already.
    on_credit_queue: bool,
    credit: Option<(Arc<CreditQueue>, ChannelId)>,
    /// The reader closed or dropped its end.
    rx_closed: bool,
    /// Live sender handles; at zero the reader sees the end.
    senders: usize,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep going.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A new channel queue.
pub(crate) fn inbox() -> (InboxTx, InboxRx) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            queue: VecDeque::new(),
            queued_bytes: 0,
            consumed: 0,
            threshold: usize::MAX,
            on_credit_queue: false,
            credit: None,
            rx_closed: false,
            senders: 1,
            waker: None,
        }),
    });
    (
        InboxTx {
            shared: shared.clone(),
        },
        InboxRx { shared },
    )
}

fn data_len(msg: &ChannelMsg) -> usize {
    match msg {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 0,
    }
}

/// Append `data` to `into`. The first merge copies `into` into a buffer
/// with room for [`MERGED_MAX`]; later merges reuse it (a frozen, unshared
/// `BytesMut` converts back without copying), so merging stays linear.
fn merge(into: &mut Bytes, data: &Bytes) {
    let mut merged = match std::mem::take(into).try_into_mut() {
        Ok(m) => m,
        Err(b) => {
            let mut m = BytesMut::with_capacity(MERGED_MAX + MERGE_BELOW);
            m.extend_from_slice(&b);
            m
        }
    };
    merged.extend_from_slice(data);
    *into = merged.freeze();
}

/// The session's end of a channel queue.
#[derive(Debug)]
pub struct InboxTx {
    shared: Arc<Shared>,
}

impl Clone for InboxTx {
    fn clone(&self) -> Self {
        lock(&self.shared.state).senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for InboxTx {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.senders = st.senders.saturating_sub(1);
        if st.senders == 0 {
            if let Some(w) = st.waker.take() {
                w.wake();
            }
        }
    }
}

impl InboxTx {
    /// Queue a message; never waits. Fails only when the reader is gone.
    pub async fn send(&self, msg: ChannelMsg) -> Result<(), SendError<ChannelMsg>> {
        self.try_send(msg).map_err(|e| match e {
            TrySendError::Full(m) | TrySendError::Closed(m) => SendError(m),
        })
    }

    /// Queue a message; never full (the window bounds data).
    pub fn try_send(&self, msg: ChannelMsg) -> Result<(), TrySendError<ChannelMsg>> {
        let mut st = lock(&self.shared.state);
        if st.rx_closed {
            return Err(TrySendError::Closed(msg));
        }
        st.queue.push_back(msg);
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        Ok(())
    }

    /// Whether the reader is gone.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.state).rx_closed
    }

    /// Queue channel data for the reader, merging small messages. `credit`
    /// is where the reader reports consumption for channel `id`, once it
    /// adds up to `threshold`.
    pub(crate) fn deliver(
        &self,
        id: ChannelId,
        credit: &Arc<CreditQueue>,
        threshold: usize,
        msg: ChannelMsg,
    ) -> Delivery {
        let len = data_len(&msg);
        let mut st = lock(&self.shared.state);
        if st.rx_closed {
            return Delivery::Discarded;
        }
        st.threshold = threshold.max(1);
        if st.credit.is_none() {
            st.credit = Some((credit.clone(), id));
        }
        let merged = len < MERGE_BELOW
            && match (st.queue.back_mut(), &msg) {
                (Some(ChannelMsg::Data { data: back }), ChannelMsg::Data { data })
                    if back.len() < MERGED_MAX =>
                {
                    merge(back, data);
                    true
                }
                (
                    Some(ChannelMsg::ExtendedData {
                        data: back,
                        ext: back_ext,
                    }),
                    ChannelMsg::ExtendedData { data, ext },
                ) if back_ext == ext && back.len() < MERGED_MAX => {
                    merge(back, data);
                    true
                }
                _ => false,
            };
        if !merged {
            if st.queue.len() >= MAX_QUEUED_MESSAGES {
                return Delivery::Overflow;
            }
            st.queue.push_back(msg);
        }
        st.queued_bytes += len;
        if let Some(w) = st.waker.take() {
            w.wake();
        }
        Delivery::Queued
    }

    /// Bytes queued and not yet taken by the reader.
    pub(crate) fn queued_bytes(&self) -> usize {
        lock(&self.shared.state).queued_bytes
    }

    /// Take the bytes consumed since the last call, and set the amount of
    /// consumption at which the reader reports again.
    pub(crate) fn take_consumed(&self, threshold: usize) -> usize {
        let mut st = lock(&self.shared.state);
        st.on_credit_queue = false;
        st.threshold = threshold.max(1);
        std::mem::take(&mut st.consumed)
    }
}

/// The reader's end of a channel queue.
#[derive(Debug)]
pub struct InboxRx {
    shared: Arc<Shared>,
}

impl InboxRx {
    /// The next message, or `None` once the session dropped the channel
    /// and the queue is empty.
    pub async fn recv(&mut self) -> Option<ChannelMsg> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Poll for the next message.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<ChannelMsg>> {
        let mut st = lock(&self.shared.state);
        match st.queue.pop_front() {
            Some(msg) => {
                let len = data_len(&msg);
                if len > 0 {
                    st.queued_bytes -= len;
                    st.consumed += len;
                    if st.consumed >= st.threshold && !st.on_credit_queue {
                        if let Some((credit, id)) = st.credit.clone() {
                            st.on_credit_queue = true;
                            credit.push(id);
                        }
                    }
                }
                Poll::Ready(Some(msg))
            }
            None if st.senders == 0 || st.rx_closed => Poll::Ready(None),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// Refuse further messages; those queued can still be read.
    pub fn close(&mut self) {
        lock(&self.shared.state).rx_closed = true;
    }
}

impl Drop for InboxRx {
    fn drop(&mut self) {
        let mut st = lock(&self.shared.state);
        st.rx_closed = true;
        // Nobody will read these: free them, and let the session credit
        // them so the peer is not left without window.
        let dropped = st.queued_bytes;
        st.queue.clear();
        st.queued_bytes = 0;
        st.consumed += dropped;
        if st.consumed > 0 && !st.on_credit_queue {
            if let Some((credit, id)) = st.credit.clone() {
                st.on_credit_queue = true;
                credit.push(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn data(n: usize) -> ChannelMsg {
        ChannelMsg::Data {
            data: Bytes::from(vec![7u8; n]),
        }
    }

    fn recv_now(rx: &mut InboxRx) -> Poll<Option<ChannelMsg>> {
        let waker = futures::task::noop_waker();
        rx.poll_recv(&mut Context::from_waker(&waker))
    }

    #[test]
    fn small_data_messages_are_merged() {
        let (tx, mut rx) = inbox();
        let credit = CreditQueue::new();
        for _ in 0..10_000 {
            assert_eq!(tx.deliver(ChannelId(1), &credit, 1 << 20, data(1)), Delivery::Queued);
        }
        assert_eq!(tx.queued_bytes(), 10_000);
        let mut total = 0;
        let mut messages = 0;
        while let Poll::Ready(Some(ChannelMsg::Data { data })) = recv_now(&mut rx) {
            total += data.len();
            messages += 1;
        }
        assert_eq!(total, 10_000);
        assert!(messages <= 2, "{messages} messages for 10 000 one-byte packets");
    }

    #[test]
    fn interleaved_tiny_messages_overflow_instead_of_growing() {
        let (tx, _rx) = inbox();
        let credit = CreditQueue::new();
        let mut last = Delivery::Queued;
        for i in 0..(MAX_QUEUED_MESSAGES + 10) {
            let msg = if i % 2 == 0 {
                data(1)
            } else {
                ChannelMsg::ExtendedData {
                    data: Bytes::from_static(b"x"),
                    ext: 1,
                }
            };
            last = tx.deliver(ChannelId(1), &credit, 1 << 20, msg);
            if last != Delivery::Queued {
                break;
            }
        }
        assert_eq!(last, Delivery::Overflow);
    }

    #[test]
    fn consumption_reaches_the_credit_queue_at_the_threshold() {
        let (tx, mut rx) = inbox();
        let credit = CreditQueue::new();
        for _ in 0..4 {
            tx.deliver(ChannelId(3), &credit, 50_000, data(20_000));
        }
        assert!(matches!(recv_now(&mut rx), Poll::Ready(Some(_))));
        assert!(credit.take().is_empty(), "20 000 < threshold");
        assert!(matches!(recv_now(&mut rx), Poll::Ready(Some(_))));
        assert!(matches!(recv_now(&mut rx), Poll::Ready(Some(_))));
        assert_eq!(credit.take(), vec![ChannelId(3)]);
        // Once on the queue, it is not queued twice before the session
        // takes the credit.
        assert!(matches!(recv_now(&mut rx), Poll::Ready(Some(_))));
        assert!(credit.take().is_empty());
        assert_eq!(tx.take_consumed(50_000), 80_000);
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn a_dropped_reader_releases_its_bytes_for_credit() {
        let (tx, rx) = inbox();
        let credit = CreditQueue::new();
        tx.deliver(ChannelId(9), &credit, 1 << 20, data(1000));
        drop(rx);
        assert_eq!(credit.take(), vec![ChannelId(9)]);
        assert_eq!(tx.take_consumed(1 << 20), 1000);
        assert_eq!(
            tx.deliver(ChannelId(9), &credit, 1 << 20, data(10)),
            Delivery::Discarded
        );
    }

    #[test]
    fn the_reader_sees_the_end_after_the_queue_when_senders_are_gone() {
        let (tx, mut rx) = inbox();
        let tx2 = tx.clone();
        tx.try_send(ChannelMsg::Eof).unwrap();
        drop(tx);
        assert!(matches!(recv_now(&mut rx), Poll::Ready(Some(ChannelMsg::Eof))));
        assert!(recv_now(&mut rx).is_pending());
        drop(tx2);
        assert!(matches!(recv_now(&mut rx), Poll::Ready(None)));
    }
}
