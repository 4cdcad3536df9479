//! A raw TCP client for connection-level tests (slow clients, malformed HTTP).

use std::time::Duration;

use serde_json::Value;

use super::*;

/// A raw TCP client for connection-level tests (slow clients, malformed HTTP).
pub struct RawConn {
    stream: tokio::net::TcpStream,
    buf: Vec<u8>,
}

/// One response read by a [`RawConn`].
pub struct RawResponse {
    pub status: u16,
    /// Lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as a failure envelope; returns its code.
    pub fn error_code(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "status {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
        let v: Value = serde_json::from_slice(&self.body).expect("a JSON envelope");
        assert_eq!(v["success"], false, "{v}");
        v["error"]["code"].as_str().expect("error.code").to_owned()
    }
}

impl RawConn {
    /// Opens a connection to the app.
    pub async fn open(app: &TestApp) -> Self {
        let addr = app.running.as_ref().expect("host is running").addr;
        let stream =
            tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
                .await
                .expect("connect in time")
                .expect("connect");
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`; an error (the server may already have closed) is returned.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt as _;
        self.stream.write_all(bytes).await
    }

    /// Reads more bytes; `None` when the server closed (EOF or reset) or `within` passed.
    async fn fill(&mut self, within: Duration) -> Option<usize> {
        use tokio::io::AsyncReadExt as _;
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(within, self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => None,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Some(n)
            }
        }
    }

    /// Reads one response (head and `content-length` body); panics unless it arrives
    /// within `within`.
    pub async fn response(&mut self, within: Duration) -> RawResponse {
        let deadline = tokio::time::Instant::now() + within;
        let left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill(left()).await.unwrap_or_else(|| {
                panic!(
                    "no complete response within {within:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                )
            });
        };
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while self.buf.len() < head_end + len {
            self.fill(left())
                .await
                .unwrap_or_else(|| panic!("body of a {status} cut short"));
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// Waits for the server to close the connection, sending nothing; panics if it is
    /// still open after `within` or sends bytes. Returns how long it took.
    pub async fn closed_within(&mut self, within: Duration) -> Duration {
        let started = tokio::time::Instant::now();
        let got = self.fill(within).await;
        let elapsed = started.elapsed();
        assert!(
            got.is_none() && elapsed < within,
            "connection still open after {elapsed:?} (read {:?})",
            String::from_utf8_lossy(&self.buf)
        );
        elapsed
    }
}
