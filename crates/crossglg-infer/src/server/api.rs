//! The JSON API's handlers, its error type, authentication and the page's static files.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::input::{decode, Input, InputQuery};
use super::AppState;
use crate::described::{describe_one, gallery_columns, Described};
use crate::gallery::{Gallery, GalleryError, Recognition};

type St = State<Arc<AppState>>;

/// An answer other than success: a status and a message saying what is wrong, as
/// `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }
    pub fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<GalleryError> for ApiError {
    fn from(e: GalleryError) -> Self {
        match e {
            GalleryError::Invalid(_) | GalleryError::Embedding { .. } => {
                ApiError::unprocessable(e.to_string())
            }
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        let status = r.status();
        let msg = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the server's limit".to_string()
        } else {
            r.body_text()
        };
        ApiError::new(status, msg)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::bad(r.body_text())
    }
}

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/model", get(model_info))
        .route("/api/recognize", post(recognize))
        .route("/api/embed", post(embed))
        .route("/api/decode", post(decode_route))
        .route("/api/classes", get(list_classes))
        .route(
            "/api/classes/{name}",
            post(enroll).patch(rename).delete(delete),
        )
}

pub(crate) fn pages() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/app.js",
            get(|| async { page("text/javascript; charset=utf-8", APP_JS) }),
        )
        .route(
            "/style.css",
            get(|| async { page("text/css; charset=utf-8", STYLE) }),
        )
        .route("/health", get(health))
}

const INDEX: &str = include_str!("../../assets/web/index.html");
const APP_JS: &str = include_str!("../../assets/web/app.js");
const STYLE: &str = include_str!("../../assets/web/style.css");

fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such route; see /api/model and the docs",
    )
}

/// Bearer-token check for the API (constant-time comparison; the token is never logged).
pub(crate) async fn auth(State(s): St, req: Request, next: Next) -> Result<Response, ApiError> {
    let Some(token) = s.opts.token.as_deref() else {
        return Ok(next.run(req).await);
    };
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // browsers cannot set headers on a WebSocket: the stream also takes ?token=
    let query = (req.uri().path() == "/api/stream")
        .then(|| {
            req.uri().query().and_then(|q| {
                q.split('&')
                    .find_map(|kv| kv.strip_prefix("token="))
                    .map(str::to_string)
            })
        })
        .flatten();
    let given = header.map(str::to_string).or(query);
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => Ok(next.run(req).await),
        _ => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong token (Authorization: Bearer TOKEN)",
        )),
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

async fn health(State(s): St) -> Json<serde_json::Value> {
    let g = s.snapshot();
    Json(json!({
        "status": "ok",
        "classes": g.classes.len(),
        "exemplars": g.len(),
        "dim": g.dim,
    }))
}

#[derive(Serialize)]
struct ModelInfo {
    model_id: String,
    model_hash: Option<String>,
    dim: usize,
    layout: LayoutInfo,
    /// The layout inputs may also come in (through the server's mapping).
    mapping_source: Option<LayoutInfo>,
    threshold: Option<f32>,
    classes: usize,
    /// The classes the server can recognise from descriptions (`serve --describe`).
    #[serde(skip_serializing_if = "Option::is_none")]
    described_classes: Option<Vec<String>>,
    window: usize,
    hop: usize,
    max_frames: usize,
    max_body_bytes: usize,
}

#[derive(Serialize)]
struct LayoutInfo {
    name: String,
    joints: Vec<String>,
    edges: Vec<(usize, usize)>,
}

impl From<&crossglg_data::Layout> for LayoutInfo {
    fn from(l: &crossglg_data::Layout) -> Self {
        LayoutInfo {
            name: l.name.clone(),
            joints: l.joints.clone(),
            edges: l.edges.clone(),
        }
    }
}

async fn model_info(State(s): St) -> Json<ModelInfo> {
    let g = s.snapshot();
    Json(ModelInfo {
        model_id: s.model.model_id.clone(),
        model_hash: s.model.embedder.model_hash(),
        dim: s.model.embedder.dim(),
        layout: (&s.model.layout).into(),
        mapping_source: s.model.mapping.as_ref().map(|m| (&m.source).into()),
        threshold: g.threshold,
        classes: g.classes.len(),
        described_classes: s.model.describer.as_ref().map(|d| d.classes().to_vec()),
        window: s.opts.window,
        hop: s.opts.hop,
        max_frames: s.opts.max_frames,
        max_body_bytes: s.opts.max_body_bytes,
    })
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("application/json"))
}

/// Runs model work on a blocking thread once one of the `max_concurrent` slots is free
/// (waiting at most `queue_timeout_ms`, else 503). A panic in the model becomes a 500.
async fn compute<T: Send + 'static>(
    s: &Arc<AppState>,
    f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let wait = Duration::from_millis(s.opts.queue_timeout_ms);
    let permit = tokio::time::timeout(wait, s.jobs.acquire())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the server is busy; try again",
            )
        })?
        .map_err(|_| ApiError::internal("the server is shutting down"))?;
    let state = s.clone();
    let r = tokio::task::spawn_blocking(move || f(&state))
        .await
        .map_err(|e| ApiError::internal(format!("the model failed: {e}")));
    drop(permit);
    r?
}

/// Decodes the body and embeds every sequence.
async fn decode_embed(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    query: InputQuery,
    body: Bytes,
) -> Result<(Vec<Input>, Vec<Vec<f32>>, InputQuery), ApiError> {
    let (inputs, emb, _, query) = decode_embed_text(s, headers, query, body, false).await?;
    Ok((inputs, emb, query))
}

/// Embedded inputs and their rows from the decoder.
type Embedded = (Vec<Input>, Vec<Vec<f32>>, Option<Vec<Vec<f32>>>, InputQuery);

/// Decodes the body and embeds every sequence; with `text` and descriptions served, also
/// scores them against the descriptions (one pass of the model when the describer shares
/// the embedder's weights).
async fn decode_embed_text(
    s: &Arc<AppState>,
    headers: &HeaderMap,
    query: InputQuery,
    body: Bytes,
    text: bool,
) -> Result<Embedded, ApiError> {
    let json = is_json(headers);
    compute(s, move |st| {
        let inputs = decode(st, json, &query, &body)?;
        let sk: Vec<_> = inputs.iter().map(|i| i.skeleton.clone()).collect();
        let failed = |e: crate::embedder::EmbedError| ApiError::internal(e.to_string());
        let describer = st.model.describer.as_deref().filter(|_| text);
        let both = match describer {
            Some(d) if crate::embedder::shares_model(&*st.model.embedder, d) => {
                d.embed_and_describe(&sk).map_err(failed)?
            }
            _ => None,
        };
        let (emb, rows) = match (both, describer) {
            (Some((e, t)), _) => (e, Some(t)),
            (None, Some(d)) => (
                st.model.embedder.embed(&sk).map_err(failed)?,
                Some(d.describe(&sk).map_err(failed)?),
            ),
            (None, None) => (st.model.embedder.embed(&sk).map_err(failed)?, None),
        };
        if emb.len() != inputs.len() || rows.as_ref().is_some_and(|t| t.len() != inputs.len()) {
            return Err(ApiError::internal(format!(
                "the model returned {} embeddings ({} description rows) for {} sequences",
                emb.len(),
                rows.as_ref().map_or(0, Vec::len),
                inputs.len()
            )));
        }
        Ok((inputs, emb, rows, query))
    })
    .await
}

#[derive(Serialize)]
struct ClassScore {
    class: String,
    similarity: f32,
}

#[derive(Serialize)]
struct SkeletonView {
    frames: usize,
    joints: usize,
    /// `frames × joints × 3` of the first person, as sent (before any mapping).
    data: Vec<f32>,
}

#[derive(Serialize)]
struct RecognizeRow {
    name: String,
    /// `null` only when the gallery is empty and descriptions answer alone.
    recognition: Option<Recognition>,
    top: Vec<ClassScore>,
    /// JID's weight per joint of the model's layout (none for models without JID).
    joint_importance: Option<Vec<f32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skeleton: Option<SkeletonView>,
    /// With descriptions served: the answers from them.
    #[serde(skip_serializing_if = "Option::is_none")]
    described: Option<Described>,
}

async fn recognize(
    State(s): St,
    query: Result<Query<InputQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let body = body?;
    let g = s.snapshot();
    if g.is_empty() && s.model.describer.is_none() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the gallery has no classes yet; enroll one first (POST /api/classes/NAME)",
        ));
    }
    let (inputs, emb, text, query) = decode_embed_text(&s, &headers, query, body, true).await?;
    let top_n = query.top.unwrap_or(5).clamp(1, 100);
    let with_skeleton = query.skeleton.unwrap_or(false);
    let beta = query.text_prior.unwrap_or(0.1);
    if !(0.0..=1.0).contains(&beta) {
        return Err(ApiError::bad(format!(
            "text_prior must be between 0 and 1, got {beta}"
        )));
    }
    let rows = compute(&s, move |st| {
        let text = match (&st.model.describer, text) {
            (Some(d), Some(t)) => Some((d, t, gallery_columns(&g, d.classes()))),
            _ => None,
        };
        let mut rows = Vec::with_capacity(inputs.len());
        for (i, (inp, e)) in inputs.into_iter().zip(&emb).enumerate() {
            let described = match &text {
                Some((d, t, columns)) => Some(describe_one(
                    d.classes(),
                    &t[i],
                    &d.prior_row(&t[i]),
                    &g,
                    columns,
                    e,
                    beta,
                )?),
                None => None,
            };
            // an empty gallery gets here only with descriptions: they answer alone
            let (recognition, top) = if g.is_empty() {
                (None, Vec::new())
            } else {
                let (recognition, ranked) = g.ranked(e)?;
                let top = ranked
                    .into_iter()
                    .take(top_n)
                    .map(|(c, similarity)| ClassScore {
                        class: g.classes[c].clone(),
                        similarity,
                    })
                    .collect();
                (Some(recognition), top)
            };
            let joint_importance = st
                .model
                .embedder
                .joint_importance(&inp.skeleton)
                .map_err(|e| ApiError::internal(e.to_string()))?;
            let skeleton = with_skeleton.then(|| view(&inp.original));
            rows.push(RecognizeRow {
                name: inp.name,
                recognition,
                top,
                joint_importance,
                skeleton,
                described,
            });
        }
        Ok(rows)
    })
    .await?;
    Ok(Json(json!({ "results": rows })))
}

/// The first person's frames with 3 coordinates per joint.
fn view(sk: &crossglg_data::Skeleton) -> SkeletonView {
    let mut data = Vec::with_capacity(sk.frames * sk.joints * 3);
    for t in 0..sk.frames {
        for v in 0..sk.joints {
            for c in 0..3 {
                data.push(if c < sk.channels {
                    sk.get(0, t, v, c)
                } else {
                    0.0
                });
            }
        }
    }
    SkeletonView {
        frames: sk.frames,
        joints: sk.joints,
        data,
    }
}

#[derive(Serialize)]
struct DecodeRow {
    name: String,
    skeleton: SkeletonView,
    joint_importance: Option<Vec<f32>>,
}

/// The sequences as the server reads them (first person, as sent) and the model's joint
/// importance: what the page draws, with or without a gallery.
async fn decode_route(
    State(s): St,
    query: Result<Query<InputQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let body = body?;
    let json = is_json(&headers);
    let rows = compute(&s, move |st| {
        decode(st, json, &query, &body)?
            .into_iter()
            .map(|i| {
                let joint_importance = st
                    .model
                    .embedder
                    .joint_importance(&i.skeleton)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(DecodeRow {
                    skeleton: view(&i.original),
                    name: i.name,
                    joint_importance,
                })
            })
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await?;
    Ok(Json(json!({ "results": rows })))
}

async fn embed(
    State(s): St,
    query: Result<Query<InputQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(query) = query?;
    let (inputs, emb, _) = decode_embed(&s, &headers, query, body?).await?;
    let rows: Vec<_> = inputs
        .iter()
        .zip(&emb)
        .map(|(i, e)| json!({ "name": i.name, "embedding": e }))
        .collect();
    Ok(Json(
        json!({ "dim": s.model.embedder.dim(), "results": rows }),
    ))
}

#[derive(Serialize)]
struct ClassRow {
    name: String,
    exemplars: usize,
}

fn class_rows(g: &Gallery) -> Vec<ClassRow> {
    g.classes
        .iter()
        .zip(g.class_counts())
        .map(|(n, c)| ClassRow {
            name: n.clone(),
            exemplars: c,
        })
        .collect()
}

async fn list_classes(State(s): St) -> Json<serde_json::Value> {
    let g = s.snapshot();
    Json(json!({
        "classes": class_rows(&g),
        "exemplars": g.len(),
        "threshold": g.threshold,
    }))
}

fn check_class_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::bad(
            "class names are 1 to 200 characters, without control characters",
        ));
    }
    Ok(())
}

/// Applies `change` to the gallery file under this process's write lock and the file's lock,
/// then publishes the result to readers.
async fn change_gallery<R: Send + 'static>(
    s: &Arc<AppState>,
    change: impl FnOnce(&mut Gallery) -> Result<R, ApiError> + Send + 'static,
) -> Result<(Arc<Gallery>, R), ApiError> {
    let _w = s.write.lock().await;
    let st = s.clone();
    let (g, r) = tokio::task::spawn_blocking(move || {
        Gallery::update(
            &st.gallery_path,
            || st.new_gallery(),
            |g| {
                g.check_for(&st.gallery_path, &*st.model.embedder, &st.model.layout)?;
                change(g)
            },
        )
    })
    .await
    .map_err(|e| ApiError::internal(format!("gallery update failed: {e}")))??;
    let g = Arc::new(g);
    *s.gallery.write().expect("gallery lock poisoned") = g.clone();
    Ok((g, r))
}

async fn enroll(
    State(s): St,
    UrlPath(name): UrlPath<String>,
    query: Result<Query<InputQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    check_class_name(&name)?;
    let Query(query) = query?;
    let (inputs, emb, _) = decode_embed(&s, &headers, query, body?).await?;
    let n = emb.len();
    let class = name.clone();
    let (g, ()) = change_gallery(&s, move |g| {
        for (i, e) in inputs.iter().zip(emb) {
            g.enroll(&class, &[e], Some(&i.name))?;
        }
        Ok(())
    })
    .await?;
    let exemplars = g
        .classes
        .iter()
        .position(|c| *c == name)
        .map_or(0, |i| g.class_counts()[i]);
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "class": name,
            "added": n,
            "exemplars": exemplars,
            "classes": g.classes.len(),
        })),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RenameBody {
    name: String,
}

async fn rename(
    State(s): St,
    UrlPath(name): UrlPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let body = body?;
    let b: RenameBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("expected {{\"name\": NEW}}: {e}")))?;
    check_class_name(&b.name)?;
    let to = b.name.clone();
    let from = name.clone();
    let (g, found) = change_gallery(&s, move |g| Ok(g.rename_class(&from, &to)?)).await?;
    if !found {
        return Err(no_class(&name));
    }
    Ok(Json(
        json!({ "renamed": name, "to": b.name, "classes": class_rows(&g) }),
    ))
}

async fn delete(
    State(s): St,
    UrlPath(name): UrlPath<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let n = name.clone();
    let (g, found) = change_gallery(&s, move |g| {
        if !g.classes.contains(&n) {
            // nothing to write: fail so the unchanged gallery is not rewritten
            return Err(no_class(&n));
        }
        Ok(g.remove_class(&n))
    })
    .await?;
    debug_assert!(found);
    Ok(Json(json!({ "deleted": name, "classes": class_rows(&g) })))
}

fn no_class(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no class `{name}` in the gallery"),
    )
}
