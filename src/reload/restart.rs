//! Keys a running process cannot change: a reload that changes one is refused with the key and
//! the reason, and the configuration serving keeps serving. Everything else is reloadable.

use crate::config::Config;

/// One restart-only key: its path, why it needs a restart, and how to read it for comparing.
struct RestartOnly {
    key: &'static str,
    why: &'static str,
    value: fn(&Config) -> String,
}

/// Every restart-only key (docs/configuration.md "Reload" repeats this list).
const RESTART_ONLY: &[RestartOnly] = &[
    RestartOnly {
        key: "server.worker_threads",
        why: "the runtime's threads are started once",
        value: |c| format!("{:?}", c.server.worker_threads),
    },
    RestartOnly {
        key: "server.log.format",
        why: "the log subscriber is installed once",
        value: |c| format!("{:?}", c.server.log.format),
    },
    RestartOnly {
        key: "server.log.level",
        why: "the log filter is installed once",
        value: |c| c.server.log.level.clone(),
    },
    RestartOnly {
        key: "admin.addr",
        why: "the admin listener (and with it /__reload__) is bound once",
        value: |c| {
            c.admin
                .as_ref()
                .map_or("none".into(), |a| a.addr.to_string())
        },
    },
    RestartOnly {
        key: "limits.max_connections",
        why: "the connection slots all listeners share are made once",
        value: |c| c.limits.max_connections.to_string(),
    },
    RestartOnly {
        key: "limits.max_connections_per_peer",
        why: "the connection slots all listeners share are made once",
        value: |c| c.limits.max_connections_per_peer.to_string(),
    },
    RestartOnly {
        key: "redis",
        why: "the shared-state store (its connection, keys and tasks) is made once",
        // No secret goes into the message: a changed password or key alone is not seen here,
        // and takes effect at the next restart as well.
        value: |c| {
            c.redis.as_ref().map_or("none".into(), |r| {
                format!(
                    "{}:{} db {} tls {} prefix {:?}",
                    r.host, r.port, r.db, r.tls, r.key_prefix
                )
            })
        },
    },
];

/// The keys names of every restart-only key, in the order they are checked.
pub fn keys() -> impl Iterator<Item = &'static str> {
    RESTART_ONLY.iter().map(|r| r.key)
}

/// One problem per restart-only key that differs between `old` and `new`.
pub fn changes(old: &Config, new: &Config) -> Vec<String> {
    RESTART_ONLY
        .iter()
        .filter_map(|r| {
            let (before, after) = ((r.value)(old), (r.value)(new));
            (before != after).then(|| {
                format!(
                    "{}: changed ({before} -> {after}), but needs a restart: {}",
                    r.key, r.why
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(extra: &str) -> Config {
        let src = format!(
            "{extra}\n[[listeners]]\nname = \"l\"\naddr = \"127.0.0.1:0\"\n\
             [[upstreams]]\nname = \"u\"\nurl = \"http://127.0.0.1:1\"\n\
             [[routes]]\nname = \"r\"\npath_prefix = \"/\"\nupstream = \"u\"\n"
        );
        crate::config::parse_str(&src, Path::new("t.toml"), Path::new("."))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn reloadable_changes_are_not_restart_only() {
        let old = config("[limits]\nidle_timeout = \"5s\"");
        let new = config("[limits]\nidle_timeout = \"9s\"");
        assert!(changes(&old, &new).is_empty());
    }

    #[test]
    fn each_restart_only_change_is_named_with_its_reason() {
        let old = config("[server]\nworker_threads = 2\n[admin]\naddr = \"127.0.0.1:9001\"");
        let new = config(
            "[server]\nworker_threads = 4\n[server.log]\nformat = \"json\"\n\
             [admin]\naddr = \"127.0.0.1:9002\"\n[limits]\nmax_connections = 50",
        );
        let problems = changes(&old, &new);
        let keys: Vec<&str> = problems
            .iter()
            .map(|p| p.split(':').next().unwrap())
            .collect();
        assert_eq!(
            keys,
            [
                "server.worker_threads",
                "server.log.format",
                "admin.addr",
                "limits.max_connections",
                "limits.max_connections_per_peer"
            ]
        );
        assert!(
            problems[0].contains("(Some(2) -> Some(4))"),
            "{}",
            problems[0]
        );
        assert!(problems[0].contains("needs a restart"), "{}", problems[0]);
    }
}
