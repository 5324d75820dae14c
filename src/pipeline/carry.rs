//! Building the snapshot of a reloaded configuration from the one serving now, keeping by name
//! the state that still means the same thing: idle pooled connections, back-off windows, quota
//! counters, the introspection cache, refresh grants and the AMO replay cache
//! (docs/configuration.md, "What a reload keeps", lists key by key what a change resets).
//!
//! Never changes the snapshot it reads from: requests in flight finish on it unchanged.

use std::sync::Arc;
use std::time::SystemTime;

use super::Snapshot;
use crate::auth::policy::AuthRuntime;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::gates::Gates;
use crate::upstream::{Resolver, Upstream};

/// Which configuration a snapshot serves.
#[derive(Debug, Clone)]
pub struct ConfigVersion {
    /// SHA-256 (hex) of the config file and the non-secret files it names; `None` for a
    /// configuration that did not come from a file (tests).
    pub hash: Option<Arc<str>>,
    /// When it was loaded (wall clock).
    pub loaded_at: SystemTime,
}

impl ConfigVersion {
    pub fn now(hash: Option<&str>) -> ConfigVersion {
        ConfigVersion {
            hash: hash.map(Arc::from),
            loaded_at: SystemTime::now(),
        }
    }
}

impl Snapshot {
    /// The snapshot for `config`, keeping what still applies from `previous`.
    pub fn carry_over(
        config: &Config,
        clock: &SharedClock,
        previous: &Snapshot,
        version: ConfigVersion,
    ) -> anyhow::Result<Snapshot> {
        let old = &previous.config;
        let resolver = Resolver::from_settings(&config.resolver);
        let same_resolution = config.resolver == old.resolver;
        let upstreams = config
            .upstreams
            .iter()
            .map(|u| {
                let same_name = old.upstreams.iter().position(|o| o.name == u.name);
                let upstream = match same_name {
                    Some(i) => Upstream::carry_over(
                        u,
                        &old.upstreams[i],
                        &previous.upstreams[i],
                        resolver.clone(),
                        same_resolution,
                    )?,
                    None => Upstream::with_resolver(u, resolver.clone())?,
                };
                Ok(Arc::new(upstream))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let gates = Gates::carry_over(config, old, &previous.gates)?;
        let auth = AuthRuntime::carry_over(
            config,
            &upstreams,
            &gates.backoff,
            clock,
            Some((old, &previous.auth)),
            previous.store.clone(),
        )?;
        Ok(Snapshot::assemble(
            config,
            upstreams,
            gates,
            auth,
            previous.store.clone(),
            version,
        ))
    }

    pub fn with_version(mut self, version: ConfigVersion) -> Snapshot {
        self.version = version;
        self
    }
}
