//! `--transport iroh` for `wraith serve` and `wraith connect`: flag values
//! into the library's iroh types, and the ticket lines the server prints.

use std::sync::Arc;

use anyhow::Result;
use wraith_core::keys::ssh_key::PrivateKey;
use wraith_core::transport::{Acceptor, Transport};

use crate::ConnectTransportArgs;

#[cfg(feature = "iroh")]
mod imp {
    use super::*;
    use wraith_core::transport::{
        IrohAcceptor, IrohEndpoint, IrohOptions, IrohPeer, IrohRelay, IrohTransport, ProxyUrl,
        derive_secret_key,
    };

    fn relay(value: Option<&str>) -> Result<IrohRelay> {
        Ok(value.map(str::parse).transpose()?.unwrap_or_default())
    }

    pub(crate) async fn bind_acceptor(
        listen: Option<&str>,
        relay_flag: Option<&str>,
        host_key: &PrivateKey,
    ) -> Result<(Box<dyn Acceptor>, Vec<String>)> {
        let mut opts = IrohOptions::new(relay(relay_flag)?);
        opts.secret_key = Some(derive_secret_key(host_key)?);
        opts.bind = match listen {
            Some(l) => Some(l.parse().map_err(|_| {
                anyhow::anyhow!(
                    "invalid --listen value {l:?}: with --transport iroh give the UDP address as IP:PORT, e.g. 0.0.0.0:4433"
                )
            })?),
            None => None,
        };
        let endpoint = IrohEndpoint::bind(opts).await?;
        let ticket = endpoint.ticket().await;
        let mut connect = format!("wraith connect --transport iroh --peer {ticket}");
        if let Some(r) = relay_flag.filter(|r| *r != "default") {
            connect.push_str(&format!(" --iroh-relay {r}"));
        }
        let banner = vec![
            format!("endpoint: {}", endpoint.id()),
            format!("ticket: {ticket}"),
            format!("connect with: {connect}"),
        ];
        Ok((Box::new(IrohAcceptor::new(endpoint)), banner))
    }

    pub(crate) async fn make_transport(
        peer: &str,
        t: &ConnectTransportArgs,
    ) -> Result<(String, u16, Arc<dyn Transport>)> {
        let peer: IrohPeer = peer.parse()?;
        let mut opts = IrohOptions::new(relay(t.iroh_relay.as_deref())?);
        opts.proxy = t.proxy.as_deref().map(str::parse::<ProxyUrl>).transpose()?;
        let endpoint = IrohEndpoint::bind(opts).await?;
        // The endpoint id names the server in known_hosts and messages.
        let host = peer.id().to_string();
        let transport = IrohTransport::new(endpoint, peer)?;
        Ok((host, 22, Arc::new(transport)))
    }
}

#[cfg(not(feature = "iroh"))]
mod imp {
    use super::*;

    pub(crate) async fn bind_acceptor(
        _: Option<&str>,
        _: Option<&str>,
        _: &PrivateKey,
    ) -> Result<(Box<dyn Acceptor>, Vec<String>)> {
        crate::usage_error("--transport iroh: this wraith was built without the `iroh` feature")
    }

    pub(crate) async fn make_transport(
        _: &str,
        _: &ConnectTransportArgs,
    ) -> Result<(String, u16, Arc<dyn Transport>)> {
        crate::usage_error("--transport iroh: this wraith was built without the `iroh` feature")
    }
}

pub(crate) use imp::{bind_acceptor, make_transport};
