//! The stream endpoint: a WebSocket that takes one pose frame per text message (the JSON of
//! `crossglg stream`: `{"t": seconds, "joints": [[x, y, z], ...]}`) and answers with one
//! recognition per window, as `crossglg stream` prints them (with descriptions served, also
//! before any class is enrolled: zero-shot only). A bad frame is answered with
//! `{"error": ..., "line": N}` and the stream goes on.

use std::io::{BufReader, Read};
use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::api::ApiError;
use super::AppState;
use crate::stream::{FrameReader, PoseFormat, StreamConfig, StreamRecognizer};

/// Largest message a client may send (one frame).
const MAX_MESSAGE: usize = 1 << 20;
/// Frames buffered between the socket and the recogniser.
const QUEUE: usize = 256;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// 2 or 3 coordinates per joint (default 3).
    #[serde(default)]
    dims: Option<usize>,
    /// Each joint carries a trailing confidence.
    #[serde(default)]
    confidence: Option<bool>,
    #[serde(default)]
    fps: Option<f64>,
    /// With descriptions served: the description prior's weight (0..1, default 0.1).
    #[serde(default)]
    text_prior: Option<f32>,
    /// Checked by the authentication layer; accepted here so it is not an unknown field.
    #[serde(default)]
    #[allow(dead_code)]
    token: Option<String>,
}

pub(crate) async fn stream(
    State(s): State<Arc<AppState>>,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let Query(q) = query?;
    let g = s.snapshot();
    // with descriptions served, an empty gallery streams zero-shot answers alone
    if g.is_empty() && s.model.describer.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the gallery has no classes yet; enroll one first",
        ));
    }
    let joints = match &s.model.mapping {
        Some(m) => m.source.num_joints(),
        None => s.model.layout.num_joints(),
    };
    let cfg = StreamConfig {
        format: PoseFormat::JsonLines,
        joints,
        dims: q.dims.unwrap_or(3),
        confidence: q.confidence.unwrap_or(false),
        fps: q.fps.unwrap_or(30.0),
        window: s.opts.window,
        hop: s.opts.hop,
        ..StreamConfig::default()
    };
    cfg.check().map_err(|e| ApiError::bad(e.to_string()))?;
    let beta = q.text_prior.unwrap_or(0.1);
    if !(0.0..=1.0).contains(&beta) {
        return Err(ApiError::bad(format!(
            "text_prior must be between 0 and 1, got {beta}"
        )));
    }
    let permit = s.streams.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("already {} open streams; try later", s.opts.max_streams),
        )
    })?;
    Ok(ws
        .max_message_size(MAX_MESSAGE)
        .on_upgrade(move |socket| async move {
            run(socket, s, g, cfg, beta).await;
            drop(permit);
        }))
}

/// Frames from the socket as lines, for a [`FrameReader`] on the recogniser's thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for Lines {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.rx.blocking_recv() {
                Some(text) => {
                    // one frame per message: newlines inside would split it
                    self.buf = text.replace(['\n', '\r'], " ").into_bytes();
                    self.buf.push(b'\n');
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

async fn run(
    socket: WebSocket,
    s: Arc<AppState>,
    g: Arc<crate::gallery::Gallery>,
    cfg: StreamConfig,
    beta: f32,
) {
    use futures_util::{SinkExt, StreamExt};
    let (mut sink, mut source) = socket.split();
    let (in_tx, in_rx) = mpsc::channel::<String>(QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<String>(QUEUE);
    let worker = tokio::task::spawn_blocking(move || {
        let reader = BufReader::new(Lines {
            rx: in_rx,
            buf: Vec::new(),
            pos: 0,
        });
        let send = |v: serde_json::Value| out_tx.blocking_send(v.to_string()).is_ok();
        let frames = match FrameReader::new(reader, &cfg) {
            Ok(f) => f,
            Err(e) => {
                send(serde_json::json!({ "error": e.to_string() }));
                return;
            }
        };
        let mut rec = match StreamRecognizer::new(
            &*s.model.embedder,
            &g,
            s.model.mapping.as_ref(),
            Ok,
            cfg.window,
            cfg.hop,
        )
        .and_then(|r| match &s.model.describer {
            Some(d) => r.with_descriptions(&**d, beta),
            None => Ok(r),
        })
        // an empty gallery streams from the descriptions alone, or not at all
        .and_then(|r| r.check().map(|()| r))
        {
            Ok(r) => r,
            Err(e) => {
                send(serde_json::json!({ "error": e.to_string() }));
                return;
            }
        };
        for frame in frames {
            let reply = match frame.and_then(|f| rec.push(f)) {
                Ok(None) => continue,
                Ok(Some(ev)) => serde_json::to_value(&ev).unwrap_or_default(),
                Err(e) => serde_json::json!({ "error": e.to_string() }),
            };
            if !send(reply) {
                return;
            }
        }
    });
    loop {
        tokio::select! {
            msg = source.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if in_tx.send(t.to_string()).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Binary(_))) => {
                    let e = serde_json::json!({ "error": "send frames as text messages (JSON)" });
                    if sink.send(Message::Text(e.to_string().into())).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            out = out_rx.recv() => match out {
                Some(text) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                None => break,
            },
        }
    }
    drop(in_tx);
    // the recogniser ends when its input closes; flush what it still says
    while let Some(text) = out_rx.recv().await {
        if sink.send(Message::Text(text.into())).await.is_err() {
            break;
        }
    }
    let _ = worker.await;
    let _ = sink.close().await;
}
