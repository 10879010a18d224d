//! Remote forwards (`tcpip-forward`): listeners bound on the server that
//! belong to one session. Each accepted connection becomes a
//! `forwarded-tcpip` channel back to the client. When the session ends the
//! listeners close at once, so a reconnecting client can bind the same port.

use std::collections::HashMap;
use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::transport::SocketOpts;

/// The remote-forward listeners of one session, keyed by the (address, port)
/// the client asked for.
#[derive(Default)]
pub(crate) struct RemoteForwards {
    listeners: HashMap<(String, u32), JoinHandle<()>>,
}

impl RemoteForwards {
    /// Bind a listener and start serving it. Returns the bound port.
    pub(crate) async fn start(
        &mut self,
        requested_addr: &str,
        bind_ip: &str,
        port: u32,
        handle: russh::server::Handle,
    ) -> std::io::Result<u32> {
        let port16 = u16::try_from(port).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, "port out of range")
        })?;
        let listener = TcpListener::bind((bind_ip, port16)).await?;
        let bound = u32::from(listener.local_addr()?.port());
        let key = (requested_addr.to_string(), bound);
        if self.listeners.contains_key(&key) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                "already forwarded",
            ));
        }
        let addr = requested_addr.to_string();
        let task = tokio::spawn(serve(listener, addr, bound, handle));
        self.listeners.insert(key, task);
        Ok(bound)
    }

    /// Stop one listener. False if there was none.
    pub(crate) fn cancel(&mut self, requested_addr: &str, port: u32) -> bool {
        match self.listeners.remove(&(requested_addr.to_string(), port)) {
            Some(task) => {
                task.abort();
                true
            }
            None => false,
        }
    }
}

impl Drop for RemoteForwards {
    fn drop(&mut self) {
        for (_, task) in self.listeners.drain() {
            task.abort();
        }
    }
}

async fn serve(listener: TcpListener, addr: String, port: u32, handle: russh::server::Handle) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "remote forward accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        SocketOpts::default().apply(&stream);
        let handle = handle.clone();
        let addr = addr.clone();
        tokio::spawn(async move {
            let originator: SocketAddr = peer;
            let channel = match handle
                .channel_open_forwarded_tcpip(
                    addr,
                    port,
                    originator.ip().to_string(),
                    u32::from(originator.port()),
                )
                .await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::debug!(error = %e, "client refused a forwarded connection");
                    return;
                }
            };
            let mut channel = channel.into_stream();
            let mut stream = stream;
            let _ = crate::copy::splice(&mut stream, &mut channel).await;
        });
    }
}
