//! The real `fxa-gateway` binary as a child process, its stderr read line by line (for tests of
//! logging and shutdown that need the process, not the in-process gateway).
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

pub const BIN: &str = env!("CARGO_BIN_EXE_fxa-gateway");
const STARTUP: Duration = Duration::from_secs(20);

/// A gateway process with its stderr read line by line.
pub struct Process {
    child: Child,
    lines: mpsc::UnboundedReceiver<String>,
    /// Every stderr line read so far, in order.
    seen: Vec<String>,
}

impl Process {
    /// Starts `fxa-gateway --config <dir>/gateway.toml` with `toml`.
    pub fn spawn(dir: &Path, toml: &str) -> Process {
        let path = dir.join("gateway.toml");
        std::fs::write(&path, toml).expect("write config");
        let mut command = Command::new(BIN);
        command.arg("--config").arg(&path);
        Process::spawn_command(command)
    }

    /// Starts `command` (the gateway, perhaps through a wrapper such as `setpriv`) with its
    /// stderr read line by line.
    pub fn spawn_command(mut command: Command) -> Process {
        let mut child = command
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn fxa-gateway");
        let stderr = child.stderr.take().expect("stderr pipe");
        let (tx, lines) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut reader = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = reader.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Process {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads lines until one satisfies `pick`, returning what it picked.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + STARTUP;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("gateway stderr closed; so far:\n{}", self.seen.join("\n")),
                Err(_) => panic!("no matching log line; so far:\n{}", self.seen.join("\n")),
            };
            let found = pick(&line);
            self.seen.push(line);
            if let Some(found) = found {
                return found;
            }
        }
    }

    /// The process id (for signals and /proc).
    pub fn pid(&self) -> u32 {
        self.child.id().expect("gateway pid")
    }

    /// Every stderr line read so far.
    pub fn seen(&self) -> &[String] {
        &self.seen
    }

    /// Sends SIGTERM, waits for the exit and returns the status and the whole stderr.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("gateway pid").to_string();
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(kill.success(), "kill -TERM {pid} failed");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("gateway did not exit after SIGTERM")
            .expect("wait for gateway");
        // The pipe closes at exit: collect the rest.
        while let Ok(Some(line)) =
            tokio::time::timeout(Duration::from_secs(5), self.lines.recv()).await
        {
            self.seen.push(line);
        }
        (status, self.seen.join("\n"))
    }
}

impl Process {
    /// The address of the listener named `listener`, from the JSON `listening` event.
    pub async fn listening(&mut self, listener: &str) -> SocketAddr {
        self.wait_for(|line| {
            let v: Value = serde_json::from_str(line).ok()?;
            let f = &v["Fields"];
            (f["message"] == "listening" && f["listener"] == listener)
                .then(|| f["addr"].as_str()?.parse().ok())
                .flatten()
        })
        .await
    }
}
