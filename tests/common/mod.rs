//! An llmwatch server on a free loopback port with a temporary database and a clock the test
//! controls.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use llmwatch::app::App;
use llmwatch::config::RawConfig;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub struct TestServer {
    pub url: String,
    pub dir: tempfile::TempDir,
    pub now: Arc<AtomicI64>,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<std::io::Result<()>>>,
}

/// Unix ms of an RFC 3339 instant.
pub fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

impl TestServer {
    pub async fn start(config_toml: &str, now_ms: i64) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        Self::start_in(dir, config_toml, now_ms).await
    }

    pub async fn start_in(dir: tempfile::TempDir, config_toml: &str, now_ms: i64) -> TestServer {
        let mut config = RawConfig::parse(config_toml).unwrap().validate().unwrap();
        config.db = dir.path().join("llmwatch.db");
        let now = Arc::new(AtomicI64::new(now_ms));
        let clock_now = now.clone();
        let app = App::build(config, Arc::new(move || clock_now.load(Ordering::SeqCst))).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(app.serve(listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            url,
            dir,
            now,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn post_events(&self, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}/api/v1/events", self.url))
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// POSTs raw bytes with the given headers; returns status, content type and body.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (u16, String, Vec<u8>) {
        let mut req = self.client.post(format!("{}{path}", self.url)).body(body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        (status, ct, resp.bytes().await.unwrap().to_vec())
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Graceful stop; returns the temporary directory so a test can restart on it.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        let TestServer { dir, .. } = self;
        dir
    }
}

/// Asserts two USD amounts agree to a nano-dollar.
pub fn assert_usd(actual: &Value, expected: f64) {
    let a = actual
        .as_f64()
        .unwrap_or_else(|| panic!("expected a number, got {actual}"));
    assert!(
        (a - expected).abs() < 1.5e-9,
        "expected ${expected}, got ${a}"
    );
}
