//! A real `redis-server` (Debian's package) for the shared-state tests: its own process on a
//! free loopback port, persistence off, killed with the test. It can be killed and restarted on
//! the same port mid-test, and every key and value it holds can be read back.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or killed) `redis-server`.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// TLS only (`--port 0 --tls-port`), with `cert.pem`/`key.pem`/`ca.pem` in `dir`.
    tls: bool,
}

impl RedisServer {
    /// Starts a server on a free loopback port (picked by binding port 0 and releasing it;
    /// retried when another process took the port in between).
    pub async fn start() -> RedisServer {
        for _ in 0..20 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
                tls: false,
            };
            if server.spawn().await {
                return server;
            }
        }
        panic!(
            "could not start redis-server on a free port (is the redis-server package installed?)"
        );
    }

    /// A server that speaks only TLS, with `certs`' leaf (issued for `localhost`).
    pub async fn start_tls(certs: &super::client::TestCerts) -> RedisServer {
        for _ in 0..20 {
            let mut server = RedisServer {
                port: free_port(),
                child: None,
                dir: tempfile::tempdir().expect("temp dir"),
                tls: true,
            };
            certs.write_to(server.dir.path());
            if server.spawn().await {
                return server;
            }
        }
        panic!("could not start redis-server with TLS on a free port");
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://localhost:PORT` for a TLS server.
    pub fn url(&self) -> String {
        if self.tls {
            format!("rediss://localhost:{}", self.port)
        } else {
            format!("redis://127.0.0.1:{}", self.port)
        }
    }

    /// The CA file a TLS server's certificate chains to.
    pub fn ca_path(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (persistence is off).
    pub async fn restart(&mut self) {
        self.kill();
        for _ in 0..50 {
            if self.spawn().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// A connection for the test's own reads.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("redis url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to the test redis")
    }

    /// Every key with its value, as bytes (strings as they are; hashes as `field value ...`).
    pub async fn dump(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut conn = self.connection().await;
        let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
            .arg("*")
            .query_async(&mut conn)
            .await
            .expect("KEYS");
        let mut out = Vec::new();
        for key in keys {
            let kind: String = redis::cmd("TYPE")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("TYPE");
            let value: Vec<u8> = match kind.as_str() {
                "string" => redis::cmd("GET")
                    .arg(&key)
                    .query_async::<Option<Vec<u8>>>(&mut conn)
                    .await
                    .expect("GET")
                    .unwrap_or_default(),
                "hash" => {
                    let pairs: Vec<Vec<u8>> = redis::cmd("HGETALL")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await
                        .expect("HGETALL");
                    pairs.join(&b' ')
                }
                other => panic!("unexpected key type {other}"),
            };
            out.push((key, value));
        }
        out
    }

    async fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        if self.tls {
            let file = |name: &str| self.dir.path().join(name).display().to_string();
            cmd.args(["--port", "0", "--tls-port", &self.port.to_string()])
                .args(["--tls-cert-file", &file("cert.pem")])
                .args(["--tls-key-file", &file("key.pem")])
                .args(["--tls-ca-cert-file", &file("ca.pem")])
                .args(["--tls-auth-clients", "no"]);
        } else {
            cmd.args(["--port", &self.port.to_string()]);
        }
        let child = cmd
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run redis-server (apt-get install -y redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                // Exited: most likely the port was taken.
                self.child = None;
                return false;
            }
            if self.tls {
                // Ready once it accepts connections (the gateway under test speaks TLS to it).
                if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                    return true;
                }
            } else if let Ok(client) = redis::Client::open(self.url())
                && let Ok(Ok(mut conn)) = tokio::time::timeout(
                    Duration::from_millis(200),
                    client.get_multiplexed_async_connection(),
                )
                .await
                && redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        self.kill();
        false
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
