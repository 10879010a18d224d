#!/usr/bin/env python3
"""An authenticated SSH client that puts attacker-chosen text everywhere
the protocol lets a client choose a string: the end-to-end tests of log
escaping and host-name checks (crates/wraith/tests/e2e_peer_text.rs).

It logs in with a real SSH implementation nobody on this project wrote
(AsyncSSH, Debian's python3-asyncssh).

  forge --payload TEXT
      First a login with --bad-identity (expected to be refused: the real
      failed attempt), then a login as user TEXT with --identity, then, on a
      direct-tcpip channel to 127.0.0.1:--target-port, channel requests
      whose type, env name and value, exec command and subsystem name are
      TEXT; global requests named TEXT; tcpip-forward and
      direct-streamlocal with TEXT as address and path; direct-tcpip with
      TEXT as host and as originator. Prints "sent <n>".

  open-hosts HEX...
      Logs in and opens one direct-tcpip channel to each host, given as
      the hex of its UTF-8 bytes (argv cannot carry NUL) (port
      --target-port), in order, waiting for each answer. Prints one line
      per host: "open <index>" or "refused <index> <reason code>".

Exit 0 when it ran to the end; any unexpected failure exits 2 with a
traceback. Every wait is bounded by --seconds.
"""

import argparse
import asyncio
import sys

import asyncssh
import asyncssh.connection
from asyncssh.packet import String, UInt32

# AsyncSSH runs user names through SASLprep, which refuses control
# characters; a hostile client would not, so neither do we.
asyncssh.connection.saslprep = lambda s: s


def connect(args, user, identity):
    return asyncssh.connect(
        args.host,
        args.port,
        username=user,
        client_keys=[identity],
        known_hosts=args.known_hosts,
        agent_path=None,
        config=[],
        preferred_auth="publickey",
    )


async def forge(args):
    payload = args.payload
    text = payload.encode("utf-8")
    sent = 0

    try:
        async with connect(args, "nobody", args.bad_identity):
            raise SystemExit("the unauthorized key was accepted")
    except asyncssh.PermissionDenied:
        pass

    async with connect(args, payload, args.identity) as conn:
        chan, _ = await conn.create_connection(
            asyncssh.SSHTCPSession, "127.0.0.1", args.target_port
        )
        # Sent without asking for replies (some of them get none), then one
        # that does: replies come in order, so once it is answered the
        # server has handled every request before it.
        for i in range(3):
            chan._send_request(text + b" #%d" % i)
        chan._send_request(b"env", String(text), String(text))
        chan._send_request(b"exec", String(text))
        chan._send_request(b"subsystem", String(text))
        await chan._make_request(text + b" #sync")
        sent += 7
        for name in (text, b"tcpip-forward"):
            if name == b"tcpip-forward":
                await conn._make_global_request(name, String(text), UInt32(0))
            else:
                await conn._make_global_request(name)
            sent += 1
        for opener in (
            lambda: conn.create_connection(asyncssh.SSHTCPSession, payload, 80),
            lambda: conn.create_connection(
                asyncssh.SSHTCPSession, "127.0.0.1", args.target_port,
                orig_host=payload,
            ),
            lambda: conn.create_unix_connection(asyncssh.SSHUNIXSession, payload),
        ):
            try:
                c, _ = await opener()
                c.close()
            except asyncssh.ChannelOpenError:
                pass
            sent += 1
        chan.close()
    print(f"sent {sent}", flush=True)


async def open_hosts(args):
    async with connect(args, args.user, args.identity) as conn:
        for i, hexed in enumerate(args.hosts):
            host = bytes.fromhex(hexed).decode("utf-8")
            try:
                chan, _ = await conn.create_connection(
                    asyncssh.SSHTCPSession, host, args.target_port
                )
                print(f"open {i}", flush=True)
                chan.close()
            except asyncssh.ChannelOpenError as e:
                print(f"refused {i} {e.code}", flush=True)


async def main(args):
    run = forge if args.command == "forge" else open_hosts
    await asyncio.wait_for(run(args), timeout=args.seconds)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="wraith")
    parser.add_argument("--identity", required=True)
    parser.add_argument("--bad-identity")
    parser.add_argument("--known-hosts", required=True)
    parser.add_argument("--target-port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=15.0)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("forge")
    f.add_argument("--payload", required=True)
    o = sub.add_parser("open-hosts")
    o.add_argument("hosts", nargs="+")
    try:
        sys.exit(asyncio.run(main(parser.parse_args())))
    except SystemExit:
        raise
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.exit(2)
