//! Host name resolution for upstream connections: the names the config pins (`[resolver]
//! hosts`) answer from memory, the others go to the system resolver (getaddrinfo, on a blocking
//! thread) unless `[resolver] system = false`, where they fail without any query.
//!
//! This is a seam as much as a feature: tests pin their names to loopback and turn the system
//! resolver off, so no DNS query ever leaves the machine, and a name left out fails to resolve
//! as a real one would.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::{GaiResolver, Name};
use tower_service::Service;

use crate::config::ResolverSettings;

type Addrs = std::vec::IntoIter<SocketAddr>;
type Resolving = Pin<Box<dyn Future<Output = io::Result<Addrs>> + Send>>;

/// How one host name becomes addresses (the port is the connector's: 0 here).
pub trait Resolve: Send + Sync + 'static {
    fn resolve(&self, host: &str) -> Resolving;
}

/// The resolver an upstream's connector calls.
#[derive(Clone)]
pub struct Resolver(Arc<dyn Resolve>);

impl Resolver {
    pub fn new(resolve: impl Resolve) -> Resolver {
        Resolver(Arc::new(resolve))
    }

    /// The system resolver alone.
    pub fn system() -> Resolver {
        Resolver::new(Pinned {
            hosts: HashMap::new(),
            system: Some(GaiResolver::new()),
        })
    }

    /// The config's pinned names, then the system resolver if allowed.
    pub fn from_settings(settings: &ResolverSettings) -> Resolver {
        Resolver::new(Pinned {
            hosts: settings
                .hosts
                .iter()
                .map(|(name, ips)| {
                    let addrs = ips.iter().map(|ip| SocketAddr::new(*ip, 0)).collect();
                    (name.to_ascii_lowercase(), addrs)
                })
                .collect(),
            system: settings.system.then(GaiResolver::new),
        })
    }
}

impl Service<Name> for Resolver {
    type Response = Addrs;
    type Error = io::Error;
    type Future = Resolving;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Resolving {
        self.0.resolve(name.as_str())
    }
}

/// Pinned names first, then (optionally) getaddrinfo.
struct Pinned {
    hosts: HashMap<String, Vec<SocketAddr>>,
    system: Option<GaiResolver>,
}

impl Resolve for Pinned {
    fn resolve(&self, host: &str) -> Resolving {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(addrs) = self.hosts.get(&host) {
            let addrs = addrs.clone().into_iter();
            return Box::pin(std::future::ready(Ok(addrs)));
        }
        let Some(mut gai) = self.system.clone() else {
            return Box::pin(std::future::ready(Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{host}: not in [resolver] hosts and the system resolver is off"),
            ))));
        };
        Box::pin(async move {
            let name: Name = host
                .parse()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let addrs = gai.call(name).await?;
            Ok(addrs.collect::<Vec<_>>().into_iter())
        })
    }
}
