//! A fake ECS/EKS container-credentials endpoint on loopback, for
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI`: answers every `GET` with the current key set and a
//! short expiry, so the daemon's credential cache refreshes every few seconds, and lets a test
//! rotate the keys mid-run. Records how often it was asked and the `Authorization` it got.

use crate::fake_xray::Credentials;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The bearer token the daemon must send (`AWS_CONTAINER_AUTHORIZATION_TOKEN`).
pub const AUTH_TOKEN: &str = "container-auth-token-0123456789";

#[derive(Default)]
struct State {
    current: Option<Credentials>,
    hits: Vec<Option<String>>,
}

pub struct FakeCreds {
    state: Arc<Mutex<State>>,
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl FakeCreds {
    /// Serves `creds`, each answer valid for `lifetime` from the moment it is given.
    pub async fn start(creds: Credentials, lifetime: Duration) -> FakeCreds {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the credentials endpoint");
        let url = format!("http://{}/v2/credentials/test", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State { current: Some(creds), hits: vec![] }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    let mut raw = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => raw.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&raw).into_owned();
                    let auth = head
                        .lines()
                        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")))
                        .map(|(_, v)| v.trim().to_owned());
                    let creds = {
                        let mut st = shared.lock().unwrap();
                        st.hits.push(auth);
                        st.current.clone()
                    };
                    let Some(c) = creds else { return };
                    let expiry = humantime::format_rfc3339_seconds(SystemTime::now() + lifetime);
                    let body = serde_json::json!({
                        "AccessKeyId": c.access_key,
                        "SecretAccessKey": c.secret_key,
                        "Token": c.session_token,
                        "Expiration": expiry.to_string(),
                    })
                    .to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        FakeCreds { state, url, task }
    }

    /// From now on, hand out `creds`.
    pub fn rotate(&self, creds: Credentials) {
        self.state.lock().unwrap().current = Some(creds);
    }

    /// How many times the daemon asked, and with which `Authorization` header.
    pub fn hits(&self) -> Vec<Option<String>> {
        self.state.lock().unwrap().hits.clone()
    }
}

impl Drop for FakeCreds {
    fn drop(&mut self) {
        self.task.abort();
    }
}
