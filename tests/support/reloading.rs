//! The real gateway process with a config file a test rewrites and reloads: by SIGHUP, by
//! `POST /__reload__` on the admin listener, or by waiting for the file watcher. Configs must
//! log JSON (`[server.log] format = "json"`) so listener addresses and reload events can be
//! read from stderr.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::client::{self, TestResponse};
use super::process::Process;

pub struct Reloading {
    pub process: Process,
    pub config: PathBuf,
    pub admin: SocketAddr,
    /// Client listeners announced at start-up, by name.
    pub listeners: Vec<(String, SocketAddr)>,
}

impl Reloading {
    /// Starts the binary on `<dir>/gateway.toml` with `toml`, waiting for the admin listener.
    pub async fn start(dir: &Path, toml: &str) -> Reloading {
        let process = Process::spawn(dir, toml);
        Self::started(process, dir.join("gateway.toml")).await
    }

    /// A process started by the caller (on `config`), once its admin listener is up.
    pub async fn started(mut process: Process, config: PathBuf) -> Reloading {
        let mut listeners = Vec::new();
        let admin = process
            .wait_for(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                let f = &v["Fields"];
                if f["message"] != "listening" {
                    return None;
                }
                let addr: SocketAddr = f["addr"].as_str()?.parse().ok()?;
                let name = f["listener"].as_str()?;
                if name == "admin" {
                    return Some(addr);
                }
                listeners.push((name.to_owned(), addr));
                None
            })
            .await;
        Reloading {
            process,
            config,
            admin,
            listeners,
        }
    }

    /// The start-up address of the client listener `name`.
    pub fn addr(&self, name: &str) -> SocketAddr {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
            .unwrap_or_else(|| panic!("no listener {name} at start-up"))
    }

    /// The address the listener `name` announced (the next such announcement not yet read).
    pub async fn listening(&mut self, name: &str) -> SocketAddr {
        self.process.listening(name).await
    }

    /// Replaces the config file in one step (write aside, rename over), as editors and
    /// configuration managers do.
    pub fn write_config(&self, toml: &str) {
        let aside = self.config.with_extension("toml.new");
        std::fs::write(&aside, toml).expect("write config");
        std::fs::rename(&aside, &self.config).expect("rename config");
    }

    pub fn sighup(&self) {
        signal(self.process.pid(), "-HUP");
    }

    /// `POST /__reload__` on the admin listener.
    pub async fn reload(&self) -> TestResponse {
        self.admin_post("/__reload__", &[]).await
    }

    pub async fn admin_post(&self, path: &str, headers: &[(&str, &str)]) -> TestResponse {
        client::send("POST", &format!("http://{}{path}", self.admin), headers, "").await
    }

    pub async fn version(&self) -> Value {
        client::get(&format!("http://{}/__version__", self.admin))
            .await
            .json()
    }

    /// The loaded configuration's hash, from `/__version__`.
    pub async fn config_hash(&self) -> String {
        self.version().await["config"]["hash"]
            .as_str()
            .expect("config hash in /__version__")
            .to_owned()
    }

    pub async fn metrics(&self) -> String {
        client::get(&format!("http://{}/metrics", self.admin))
            .await
            .text()
    }

    /// The value of the series `series` (name with its labels, as exposed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric(&self.metrics().await, series)
    }

    /// Waits for the next JSON log event whose message is `message`; returns its fields.
    pub async fn event(&mut self, message: &str) -> Value {
        self.process
            .wait_for(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["Fields"]["message"] == message).then(|| v["Fields"].clone())
            })
            .await
    }
}

/// The value of `series` in a Prometheus text exposition, 0 when absent.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// `kill <sig> <pid>`.
pub fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {pid} failed");
}
