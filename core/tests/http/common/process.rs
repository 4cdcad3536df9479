//! The real `crochet` binary as an operator runs it: a `crochet serve` process on a free
//! port with its logs collected, and a deployment (database and settings) that hosts
//! are started on one after another.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::*;

/// The `crochet` binary, with no `CROCHET_*` variable of the test's environment.
pub fn crochet() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_crochet"));
    for (k, _) in std::env::vars() {
        if k.starts_with("CROCHET_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// What one short `crochet` command did.
pub struct Ran {
    /// The exit code (`None`: killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `crochet ARGS` in `dir` to completion.
pub fn run_crochet(dir: &Path, args: &[&str]) -> Ran {
    let output = crochet().args(args).current_dir(dir).output().unwrap();
    Ran {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A `crochet serve` process on a free port, its logs collected from the start.
pub struct Host {
    /// Taken by [`Host::wait`]; a host dropped with it (a failed test) is killed.
    child: Option<Child>,
    pub client: Client,
    /// The thread collecting stderr, joined by [`Host::wait`].
    logs: Option<std::thread::JoinHandle<String>>,
}

impl Host {
    /// Starts `crochet serve` in `dir` with `env` (on top of a free port and a fast
    /// proof-of-work) and waits for its "listening on" line.
    pub async fn start(dir: &Path, env: &[(&str, &str)]) -> Self {
        let mut cmd = crochet();
        cmd.arg("serve")
            .current_dir(dir)
            .env("CROCHET_BIND", "127.0.0.1:0")
            .env("CROCHET_POW_DIFFICULTY", "2")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        // Both pipes are drained from the start: a debug log outgrows the pipe's buffer,
        // and a server blocked on writing its log would stop answering.
        let stderr = child.stderr.take().unwrap();
        let logs = std::thread::spawn(move || {
            let mut logs = String::new();
            let _ = BufReader::new(stderr).read_to_string(&mut logs);
            logs
        });
        let stdout = child.stdout.take().unwrap();
        let (first_line, first_line_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = first_line.send(line);
            let _ = std::io::copy(&mut stdout, &mut std::io::sink());
        });
        let line = tokio::time::timeout(Duration::from_secs(120), first_line_rx)
            .await
            .expect("the host starts within two minutes")
            .unwrap_or_default();
        let Some(addr) = line.trim().strip_prefix("listening on http://") else {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no address line: {line:?}\n{}",
                logs.join().unwrap_or_default()
            );
        };
        assert_ne!(addr, "127.0.0.1:0", "the chosen port is printed");
        Self {
            client: Client::new(format!("http://{addr}")),
            child: Some(child),
            logs: Some(logs),
        }
    }

    /// The host's `GET /metrics` text.
    pub async fn metrics(&self) -> String {
        let resp = self
            .client
            .http
            .get(format!("{}/metrics", self.client.base))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert_eq!(status, 200, "{text}");
        text
    }

    /// Sends `signal` (`HUP`, `TERM`, `KILL`) to the process.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .child
            .as_ref()
            .map(Child::id)
            .unwrap_or_default()
            .to_string();
        assert!(
            Command::new("kill")
                .args([&format!("-{signal}"), &pid])
                .status()
                .unwrap()
                .success()
        );
    }

    /// Sends `signal` (`TERM`, `KILL`) and waits for the process to end.
    pub async fn stop(self, signal: &str) -> (ExitStatus, String) {
        self.signal(signal);
        self.wait().await
    }

    /// Waits for the process to end by itself.
    pub async fn wait(mut self) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("a running host");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        let logs = self.logs.take().map(|l| l.join().unwrap());
        (status, logs.unwrap_or_default())
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One deployment's database and settings, for hosts started one after another on it.
pub struct Deployment {
    pub db: TestDatabase,
    pub env: Vec<(&'static str, String)>,
}

impl Deployment {
    pub async fn new(backend: Backend) -> Option<Self> {
        let db = TestDatabase::new(backend).await?;
        let env = vec![
            ("CROCHET_DATABASE_URL", db.url.clone()),
            (
                "CROCHET_ENCRYPTION_KEY",
                crochet::secrets::MasterKey::generate().to_base64(),
            ),
        ];
        Some(Self { db, env })
    }

    /// Starts a host with a one-second lease grace, abandoned calls resolved after
    /// `interrupted_after` seconds, no policy plugins, and `extra` environment.
    pub async fn host(&self, interrupted_after: u64, extra: &[(&str, &str)]) -> Host {
        let toml = format!(
            "[gateway]\nlease_grace_seconds = 1\ninterrupted_after_seconds = {interrupted_after}\n\n\
             [plugins]\npolicy = []\ncache_dir = \"{}\"\n",
            self.plugin_cache()
        );
        self.host_with_config(&toml, extra).await
    }

    /// Where this deployment's hosts cache compiled plugins (for `[plugins] cache_dir`,
    /// so that a restart does not compile them again).
    pub fn plugin_cache(&self) -> String {
        self.db
            .dir
            .path()
            .join("plugin-cache")
            .display()
            .to_string()
    }

    /// Starts a host whose configuration file is `toml`, with `extra` environment.
    pub async fn host_with_config(&self, toml: &str, extra: &[(&str, &str)]) -> Host {
        let dir = self.db.dir.path();
        let config = dir.join("crochet.toml");
        std::fs::write(&config, toml).unwrap();
        let config = config.display().to_string();
        let mut env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        env.push(("CROCHET_CONFIG", &config));
        env.extend_from_slice(extra);
        Host::start(dir, &env).await
    }

    /// `SELECT` of one number from the deployment's database.
    pub async fn scalar(&self, sql: &str, bind: &str) -> i64 {
        let db = self.db.connect().await;
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(bind)
            .fetch_one(db.pool())
            .await
            .unwrap();
        db.close().await;
        n
    }
}
