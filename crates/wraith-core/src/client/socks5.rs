//! The SOCKS5 listener: accepts local clients, runs the handshake (parsing
//! lives in `proto::socks5`, without I/O), opens a `direct-tcpip` channel
//! per CONNECT and splices bytes. Domain names go to the server unresolved
//! (socks5h). Every handshake step has a timeout; every failure gets the
//! reply code that says what happened, never a success for a connection that
//! was not made.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::opener::{ChannelOpener, OpenError};
use crate::proto::socks5::{
    self as proto, Command, MAX_HANDSHAKE_BYTES, METHOD_SELECTED_NO_AUTH, Parse, Reply,
};

/// How long a client may take to complete the SOCKS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Read until `parse` completes, within the shared handshake buffer bound.
async fn read_until<T>(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    parse: impl Fn(&[u8]) -> std::result::Result<Parse<T>, proto::Socks5Error>,
) -> std::io::Result<std::result::Result<T, proto::Socks5Error>> {
    loop {
        match parse(buf) {
            Ok(Parse::Done(v, used)) => {
                buf.drain(..used);
                return Ok(Ok(v));
            }
            Ok(Parse::Incomplete) => {}
            Err(e) => return Ok(Err(e)),
        }
        if buf.len() >= MAX_HANDSHAKE_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "socks5 handshake too long",
            ));
        }
        let mut chunk = [0u8; 512];
        let room = (MAX_HANDSHAKE_BYTES - buf.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The SOCKS5 reply for a channel that could not be opened.
pub(crate) fn reply_for(e: &OpenError) -> Reply {
    match e {
        OpenError::Refused(russh::ChannelOpenFailure::ConnectFailed) => Reply::HostUnreachable,
        OpenError::Refused(russh::ChannelOpenFailure::AdministrativelyProhibited) => {
            Reply::NotAllowed
        }
        OpenError::Timeout => Reply::TtlExpired,
        OpenError::SessionDown => Reply::NetworkUnreachable,
        _ => Reply::GeneralFailure,
    }
}

/// Run one client's handshake and carry what it asks for: a CONNECT is
/// spliced onto a `direct-tcpip` channel, a UDP ASSOCIATE relays datagrams
/// until its TCP connection ends.
pub(super) async fn serve_client(
    mut stream: TcpStream,
    peer: SocketAddr,
    opener: ChannelOpener,
) -> std::io::Result<()> {
    let handshake = async {
        let mut buf = Vec::with_capacity(64);
        match read_until(&mut stream, &mut buf, proto::parse_greeting).await? {
            Ok(()) => stream.write_all(&METHOD_SELECTED_NO_AUTH).await?,
            Err(e) => return Ok(Err(e)),
        }
        read_until(&mut stream, &mut buf, proto::parse_request)
            .await
            .map(|r| r.map(|req| (req, buf)))
    };
    let (request, leftover) = match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "socks5 handshake timed out",
            ));
        }
        Ok(Err(e)) => return Err(e),
        Ok(Ok(Err(e))) => {
            if let Some(reply) = e.reply() {
                let _ = stream.write_all(&reply).await;
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                e.to_string(),
            ));
        }
        Ok(Ok(Ok(r))) => r,
    };

    match request.command {
        Command::Connect => {}
        Command::UdpAssociate => {
            return super::udp::associate(stream, peer, &request.target, &opener).await;
        }
        Command::Bind => {
            stream
                .write_all(&proto::encode_reply(Reply::CommandNotSupported, None))
                .await?;
            return Ok(());
        }
    }

    let target = request.target;
    let opened = opener.open_tcp(&target.host(), target.port(), peer).await;
    let mut channel = match opened {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %e, "socks5 connect failed");
            let reply = proto::encode_reply(reply_for(&e), None);
            stream.write_all(&reply).await?;
            return Ok(());
        }
    };
    stream
        .write_all(&proto::encode_reply(Reply::Succeeded, None))
        .await?;
    if !leftover.is_empty() {
        // A client that pipelined data after its request (allowed, if rare).
        tokio::io::AsyncWriteExt::write_all(&mut channel, &leftover).await?;
    }
    crate::io::splice(&mut stream, &mut channel).await?;
    Ok(())
}
