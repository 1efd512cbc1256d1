//! A minimal HTTP/1.1 client over one keep-alive connection that connects
//! again after any failure: the server it talks to is killed on purpose.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Longest wait for one answer. The server answers within its own write
/// timeout (10 s) when it is alive.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// One connection, opened on first use and after every failure.
pub(crate) struct Client {
    addr: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub(crate) fn new(addr: SocketAddr) -> Client {
        Client { addr, sender: None }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .with_context(|| format!("cannot connect to {}", self.addr))?;
            stream.set_nodelay(true).context("cannot set TCP_NODELAY")?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .context("HTTP handshake failed")?;
            tokio::spawn(conn);
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("connected just above"))
    }

    /// Sends one request; the status and body of the answer. Any failure
    /// drops the connection, so the next request opens a new one.
    pub(crate) async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes)> {
        let host = self.addr.to_string();
        let result = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let sender = self.connect().await?;
            sender.ready().await.context("connection lost")?;
            let request = Request::builder()
                .method(method)
                .uri(path)
                .header(hyper::header::HOST, host)
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))
                .context("cannot build a request")?;
            let response = sender
                .send_request(request)
                .await
                .context("request failed")?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .context("answer cut short")?
                .to_bytes();
            anyhow::Ok((status, bytes))
        })
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            self.sender = None;
        }
        result
    }
}

/// GETs `path` on a fresh connection and parses the answer as JSON.
pub(crate) async fn get_json(addr: SocketAddr, path: &str) -> Result<serde_json::Value> {
    let (status, body) = Client::new(addr)
        .send(Method::GET, path, Bytes::new())
        .await?;
    anyhow::ensure!(status == StatusCode::OK, "GET {path} answered {status}");
    serde_json::from_slice(&body).with_context(|| format!("GET {path} answered non-JSON"))
}

/// Every event the server lists for `task_id`, newest first, following
/// `next_cursor` page by page.
pub(crate) async fn task_event_ids(addr: SocketAddr, task_id: &str) -> Result<Vec<i64>> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get_json(
            addr,
            &format!("/api/events?task_id={task_id}&limit=500&cursor={cursor}"),
        )
        .await?;
        let events = page["events"]
            .as_array()
            .context("/api/events answered without events")?;
        ids.extend(events.iter().filter_map(|e| e["id"].as_i64()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => return Ok(ids),
        }
    }
}

/// The events listed for every task of a `GET /api/tasks` answer.
pub(crate) async fn listings(
    addr: SocketAddr,
    tasks: &serde_json::Value,
) -> Result<std::collections::BTreeMap<String, Vec<i64>>> {
    let mut out = std::collections::BTreeMap::new();
    for task in tasks["tasks"].as_array().into_iter().flatten() {
        let Some(id) = task["task_id"].as_str() else {
            continue;
        };
        out.insert(id.to_owned(), task_event_ids(addr, id).await?);
    }
    Ok(out)
}
