//! A control channel (`wraith-control:…`) driven through a real OpenSSH
//! client's stdin and stdout, with frames built and checked by hand,
//! independently of the codec in wraith-core.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Instant;

use super::{OpenSsh, TIMEOUT};

/// `len` as 4 bytes big-endian, then the body.
pub fn frame(body: &str) -> Vec<u8> {
    let mut v = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    v.extend_from_slice(body.as_bytes());
    v
}

pub fn envelope(kind: &str, id: &str, payload_json: &str) -> Vec<u8> {
    frame(&format!(
        r#"{{"type":"{kind}","id":"{id}","payload":{payload_json}}}"#
    ))
}

/// The fields of a frame body, checked without a JSON library: serde_json
/// writes the hub's own frames compactly, keys in sorted order.
pub fn hub_frame(kind: &str, id: &str, payload_json: &str) -> String {
    format!(r#"{{"id":"{id}","payload":{payload_json},"type":"{kind}"}}"#)
}

/// An event as the hub relays it: re-encoded like [`hub_frame`], stamped
/// with the publisher's key fingerprint.
pub fn relayed(kind: &str, id: &str, payload_json: &str, sender: &str) -> String {
    format!(r#"{{"id":"{id}","payload":{payload_json},"sender":"{sender}","type":"{kind}"}}"#)
}

/// One `ssh` process whose stdin/stdout carry a control channel.
pub struct Peer {
    pub child: Child,
    pub stdin: Option<ChildStdin>,
    /// Chunks of stdout; `None` once stdout closed.
    out: mpsc::Receiver<Option<Vec<u8>>>,
    buf: Vec<u8>,
    closed: bool,
    label: &'static str,
}

impl Peer {
    /// `ssh -W <target>`; stdout is read in the background.
    pub fn start(ssh: &OpenSsh, target: &str, label: &'static str) -> Self {
        let mut p = Self::start_unread(ssh, target, label);
        p.read_in_background();
        p
    }

    /// `ssh -W <target>` whose stdout nobody reads until
    /// [`Peer::read_in_background`].
    pub fn start_unread(ssh: &OpenSsh, target: &str, label: &'static str) -> Self {
        let mut cmd = ssh.command(&["-W", target], &[]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ssh");
        let stdin = child.stdin.take();
        let (_tx, out) = mpsc::channel();
        Peer {
            child,
            stdin,
            out,
            buf: Vec::new(),
            closed: false,
            label,
        }
    }

    pub fn read_in_background(&mut self) {
        let Some(mut stdout) = self.child.stdout.take() else {
            return;
        };
        let (tx, rx) = mpsc::channel();
        self.out = rx;
        thread::spawn(move || {
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(n) => {
                        if tx.send(Some(chunk[..n].to_vec())).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stdin
            .as_mut()
            .expect("stdin open")
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("{}: write failed: {e}", self.label));
    }

    /// Waits for more stdout; false once it has closed.
    pub fn fill(&mut self, deadline: Instant) -> bool {
        if self.closed {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match self.out.recv_timeout(left) {
            Ok(Some(chunk)) => {
                self.buf.extend(chunk);
                true
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.closed = true;
                false
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("{}: nothing received within {TIMEOUT:?}", self.label)
            }
        }
    }

    /// The next whole frame's body; `None` if stdout closed first.
    pub fn next_frame(&mut self) -> Option<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if self.buf.len() >= 4 {
                let len = u32::from_be_bytes(self.buf[..4].try_into().unwrap()) as usize;
                if self.buf.len() >= 4 + len {
                    let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                    return Some(String::from_utf8(body).expect("utf-8 frame"));
                }
            }
            if !self.fill(deadline) {
                return None;
            }
        }
    }

    pub fn expect_frame(&mut self, expected: &str) {
        let got = self.next_frame();
        assert_eq!(
            got.as_deref(),
            Some(expected),
            "{}: wrong frame",
            self.label
        );
    }

    /// Subscribe and wait until the hub confirms.
    pub fn subscribe(&mut self, kind: &str, id: &str) {
        self.send(&envelope("__subscribe", id, &format!("\"{kind}\"")));
        self.expect_frame(&hub_frame("__subscribed", id, &format!("\"{kind}\"")));
    }

    pub fn unsubscribe(&mut self, kind: &str, id: &str) {
        self.send(&envelope("__unsubscribe", id, &format!("\"{kind}\"")));
        self.expect_frame(&hub_frame("__unsubscribed", id, &format!("\"{kind}\"")));
    }

    /// Reads to EOF; the bytes left over after the frames seen so far.
    pub fn read_to_close(&mut self) -> usize {
        let deadline = Instant::now() + TIMEOUT;
        while self.fill(deadline) {}
        self.buf.len()
    }

    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        super::wait_child(&mut self.child, TIMEOUT)
            .unwrap_or_else(|| panic!("{}: ssh did not exit within {TIMEOUT:?}", self.label))
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
