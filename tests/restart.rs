//! Durability: every acknowledged record survives a SIGKILL of the real binary, and the
//! rollups after restart agree with the raw rows.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn_server(db: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_llmwatch"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--db"])
        .arg(db)
        .env("LLMWATCH_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{url}/healthz")).send().await {
            if r.status().is_success() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {url} did not become healthy");
}

#[tokio::test]
async fn acknowledged_records_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();

    let mut server = spawn_server(&db, port);
    wait_healthy(&client, &url).await;
    let mut acknowledged = 0u64;
    for batch in 0..20 {
        let body: String = (0..100)
            .map(|i| {
                json!({"request_id": format!("b{batch}-{i}"), "timestamp": "2026-03-02T10:00:00Z",
                       "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 100,
                       "user_id": format!("u{}", i % 7)})
                .to_string()
                    + "\n"
            })
            .collect();
        let r: Value = client
            .post(format!("{url}/api/v1/events"))
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        acknowledged += r["accepted"].as_u64().unwrap();
    }
    server.kill().unwrap(); // SIGKILL: no graceful shutdown, no flush
    server.wait().unwrap();

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&db, port);
    wait_healthy(&client, &url).await;
    let r: Value = client
        .get(format!("{url}/api/v1/reports/daily?date=2026-03-02"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    server.kill().unwrap();
    server.wait().unwrap();

    assert_eq!(acknowledged, 2000);
    assert_eq!(r["total_requests"].as_u64(), Some(acknowledged));
    let by_user_requests: u64 = r["by_user"]
        .as_object()
        .unwrap()
        .values()
        .map(|g| g["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(by_user_requests, acknowledged);

    // Raw rows agree with the rollups.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (rows, tokens): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(input_tokens + output_tokens) FROM requests",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows as u64, acknowledged);
    assert_eq!(r["total_tokens"].as_i64(), Some(tokens));
}
