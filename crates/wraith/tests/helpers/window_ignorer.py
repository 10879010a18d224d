#!/usr/bin/env python3
"""An SSH client that ignores the channel window: a misbehaving peer for
the end-to-end flow-control tests (crates/wraith/tests/e2e_flow_control.rs).

It logs in with a real SSH implementation nobody on this project wrote
(AsyncSSH, Debian's python3-asyncssh), opens one direct-tcpip channel to
--target-port, and then sends CHANNEL_DATA as fast as TCP takes it,
whatever window the server granted. AsyncSSH normally holds data back once
the window is used up (SSHChannel._flush_send_buf stops at
_send_window == 0); that method is replaced below by one that never looks
at the window. Everything else (key exchange, encryption, packet sizes,
host-key checking) is stock AsyncSSH.

It stops by itself: when the server closes the connection, after
--max-bytes, or after --seconds. Output on stdout, one line each:
    open window=<granted> packet=<max packet>
    closed after <bytes> bytes in <secs>s: <reason>     (exit 0)
    still open after <bytes> bytes in <secs>s[ (only the channel was closed)]
                                                        (exit 1)
Any other failure (login, channel open) exits 2 with a traceback.
"""

import argparse
import asyncio
import sys
import time

import asyncssh
from asyncssh.channel import SSHChannel
from asyncssh.connection import SSHClientConnection
from asyncssh.constants import MSG_CHANNEL_DATA
from asyncssh.packet import String


def flush_ignoring_window(self):
    """SSHChannel._flush_send_buf without the send-window check."""
    while self._send_buf:
        buf, _datatype = self._send_buf.pop(0)
        for start in range(0, len(buf), self._send_pktsize):
            data = bytes(buf[start:start + self._send_pktsize])
            self._send_buf_len -= len(data)
            self.send_packet(MSG_CHANNEL_DATA, String(data))
    self._pause_resume_writing()


SSHChannel._flush_send_buf = flush_ignoring_window

# With the window ignored, nothing in AsyncSSH stops the application from
# queueing without bound in asyncio's transport buffer, so follow the
# transport's own high/low-water signals (AsyncSSH leaves them unused).
WRITABLE = None
CLOSED = None


def pause_writing(self):
    WRITABLE.clear()


def resume_writing(self):
    WRITABLE.set()


SSHClientConnection.pause_writing = pause_writing
SSHClientConnection.resume_writing = resume_writing


CHANNEL_CLOSED = False


class Client(asyncssh.SSHClient):
    def connection_lost(self, exc):
        if not CLOSED.done():
            CLOSED.set_result(repr(exc) if exc else "connection closed by the server")


class Session(asyncssh.SSHTCPSession):
    def connection_lost(self, exc):
        global CHANNEL_CLOSED
        CHANNEL_CLOSED = True


async def main(args):
    global WRITABLE, CLOSED
    WRITABLE = asyncio.Event()
    WRITABLE.set()
    CLOSED = asyncio.get_running_loop().create_future()

    conn, _client = await asyncssh.create_connection(
        Client,
        args.host,
        args.port,
        username=args.user,
        client_keys=[args.identity],
        known_hosts=args.known_hosts,
        agent_path=None,
        config=[],
    )
    chan, _session = await conn.create_connection(
        Session, "127.0.0.1", args.target_port
    )
    print(f"open window={chan._send_window} packet={chan._send_pktsize}", flush=True)

    chunk = bytes(range(256)) * 1024
    start = time.monotonic()
    deadline = start + args.seconds
    sent = 0
    while sent < args.max_bytes and not CLOSED.done():
        left = deadline - time.monotonic()
        if left <= 0:
            break
        if not WRITABLE.is_set():
            writable = asyncio.ensure_future(WRITABLE.wait())
            await asyncio.wait(
                [writable, CLOSED], timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            writable.cancel()
            continue
        try:
            chan.write(chunk)
        except (OSError, asyncssh.Error):
            # The channel or connection is already gone; CLOSED says why.
            await asyncio.wait([CLOSED], timeout=max(left, 0.1))
            break
        sent += len(chunk)
        # Let the event loop run (read, notice a close) between writes.
        await asyncio.sleep(0)

    secs = time.monotonic() - start
    if not CLOSED.done():
        # Sending stopped (limit or transport backpressure); the server may
        # still be about to close.
        await asyncio.wait([CLOSED], timeout=max(deadline - time.monotonic(), 0))
    if CLOSED.done():
        print(f"closed after {sent} bytes in {secs:.1f}s: {CLOSED.result()}", flush=True)
        return 0
    channel = " (only the channel was closed)" if CHANNEL_CLOSED else ""
    print(f"still open after {sent} bytes in {secs:.1f}s{channel}", flush=True)
    conn.abort()
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--identity", required=True)
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--max-bytes", type=int, default=512 << 20)
    parser.add_argument("--seconds", type=float, default=10.0)
    try:
        sys.exit(asyncio.run(main(parser.parse_args())))
    except SystemExit:
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.exit(2)
