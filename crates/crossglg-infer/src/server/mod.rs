//! The recognition server (cargo feature `server`): an HTTP JSON API over one model and one
//! gallery file, a WebSocket stream of recognitions, Prometheus metrics and a web page, all
//! from one binary (the page's files are compiled in).
//!
//! Routes (every `/api` route and `/metrics` need `Authorization: Bearer TOKEN` when the
//! server has a token; the WebSocket also takes `?token=`, as browsers cannot set its headers):
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the web page |
//! | `GET /health` | `{"status": "ok", ...}` |
//! | `GET /metrics` | request counts and latency quantiles, Prometheus text format |
//! | `GET /api/model` | layout (joints, bones), embedding width, gallery summary, stream window |
//! | `POST /api/recognize` | sequences in, per sequence the recognition, top classes, joint importance |
//! | `POST /api/embed` | sequences in, embeddings out |
//! | `POST /api/decode` | sequences in, as read (for display) with the joint importance |
//! | `GET /api/classes` | enrolled classes and their exemplar counts |
//! | `POST /api/classes/{name}` | enroll the posted sequences as examples of `name` |
//! | `PATCH /api/classes/{name}` | rename (`{"name": NEW}`; merges into an existing class) |
//! | `DELETE /api/classes/{name}` | remove a class |
//! | `GET /api/stream` | WebSocket: pose frames in (the JSON of `crossglg stream`), recognitions out |
//!
//! Sequences come as JSON (`{"frames": [[[x, y, z], ...], ...]}` or `{"sequences": [...]}`) or as
//! a file body in any format the readers know, named by `?filename=` (its extension picks the
//! reader). See `docs/serving.md`.

mod api;
mod input;
mod metrics;
mod ws;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use crossglg_data::mapping::Mapping;
use crossglg_data::Layout;

use crate::embedder::{Describer, Embedder};
use crate::gallery::{Gallery, GalleryError};

pub use input::MAX_JOINTS;

/// What the server may be asked and how much at once.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub addr: SocketAddr,
    /// Bearer token required on the API when set. Never logged.
    pub token: Option<String>,
    /// Largest request body (bytes); larger ones get 413.
    pub max_body_bytes: usize,
    /// Most frames in one sequence (and most frames a stream keeps).
    pub max_frames: usize,
    /// Most sequences in one request.
    pub max_sequences: usize,
    /// Model computations at once; requests beyond wait up to `queue_timeout_ms`, then get 503.
    pub max_concurrent: usize,
    pub queue_timeout_ms: u64,
    /// Open stream connections at once; more get 503.
    pub max_streams: usize,
    /// Stream window and hop, in frames.
    pub window: usize,
    pub hop: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token: None,
            max_body_bytes: 32 << 20,
            max_frames: 10_000,
            max_sequences: 64,
            max_concurrent: 4,
            queue_timeout_ms: 30_000,
            max_streams: 16,
            window: 64,
            hop: 16,
        }
    }
}

/// The model a server answers with: how to embed, which layout its input is in, and an
/// optional mapping from the layout clients send.
pub struct ServedModel {
    pub embedder: Arc<dyn Embedder + Send + Sync>,
    pub layout: Layout,
    pub mapping: Option<Mapping>,
    /// Recorded in a gallery the server creates.
    pub model_id: String,
    /// The unknown threshold a new gallery starts with (the model's calibration).
    pub threshold: Option<f32>,
    /// Class descriptions to recognise from as well (`crossglg serve --describe`): each
    /// recognition then also carries the zero-shot answer and the description prior.
    pub describer: Option<Arc<dyn Describer + Send + Sync>>,
}

impl ServedModel {
    fn new_gallery(&self) -> Gallery {
        Gallery::for_embedder(
            &*self.embedder,
            &self.model_id,
            &self.layout,
            self.threshold,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("server: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid options: {0}")]
    Options(String),
}

pub(crate) struct AppState {
    model: ServedModel,
    opts: ServeOptions,
    gallery_path: PathBuf,
    /// The gallery as last written; readers take a snapshot (an `Arc` clone).
    gallery: RwLock<Arc<Gallery>>,
    /// Serialises this process's gallery changes (the file lock covers other processes).
    write: tokio::sync::Mutex<()>,
    jobs: tokio::sync::Semaphore,
    streams: Arc<tokio::sync::Semaphore>,
    metrics: metrics::Metrics,
}

impl AppState {
    fn snapshot(&self) -> Arc<Gallery> {
        self.gallery.read().expect("gallery lock poisoned").clone()
    }

    fn new_gallery(&self) -> Gallery {
        self.model.new_gallery()
    }
}

/// A server over `model` and the gallery file at `gallery` (created on the first enroll when
/// missing; refused when another model made it).
pub struct Server {
    state: Arc<AppState>,
}

impl Server {
    pub fn new(
        model: ServedModel,
        gallery: PathBuf,
        opts: ServeOptions,
    ) -> Result<Self, ServeError> {
        if opts.window == 0 || opts.hop == 0 || opts.window > opts.max_frames {
            return Err(ServeError::Options(format!(
                "window {} and hop {} must be at least 1, and the window at most {} frames",
                opts.window, opts.hop, opts.max_frames
            )));
        }
        if opts.max_concurrent == 0 || opts.max_streams == 0 || opts.max_sequences == 0 {
            return Err(ServeError::Options(
                "concurrency, stream and sequence limits must be at least 1".into(),
            ));
        }
        if opts.token.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ServeError::Options("the token is empty".into()));
        }
        let g = if gallery.exists() {
            let g = Gallery::load(&gallery)?;
            g.check_for(&gallery, &*model.embedder, &model.layout)?;
            g
        } else {
            model.new_gallery()
        };
        let state = AppState {
            jobs: tokio::sync::Semaphore::new(opts.max_concurrent),
            streams: Arc::new(tokio::sync::Semaphore::new(opts.max_streams)),
            model,
            opts,
            gallery_path: gallery,
            gallery: RwLock::new(Arc::new(g)),
            write: tokio::sync::Mutex::new(()),
            metrics: metrics::Metrics::default(),
        };
        Ok(Server {
            state: Arc::new(state),
        })
    }

    /// The routes, for serving on a listener of the caller's.
    pub fn router(&self) -> Router {
        let s = self.state.clone();
        let api = api::routes()
            .merge(Router::new().route("/api/stream", get(ws::stream)))
            .route("/metrics", get(metrics::render))
            .layer(axum::middleware::from_fn_with_state(s.clone(), api::auth));
        Router::new()
            .merge(api::pages())
            .merge(api)
            .fallback(api::not_found)
            .layer(axum::middleware::from_fn_with_state(
                s.clone(),
                metrics::track,
            ))
            .layer(DefaultBodyLimit::max(s.opts.max_body_bytes))
            .with_state(s)
    }

    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }

    /// Binds `opts.addr` and serves until Ctrl-C, on a runtime of its own; `on_ready` gets the
    /// bound address (the port when 0 was asked for).
    pub fn run(self, on_ready: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            // requests run candle ops on these threads (blocking ones included): no subnormals
            .on_thread_start(|| {
                crossglg_kernels::flush_denormals_on_this_thread();
            })
            .build()?;
        let addr = self.state.opts.addr;
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?;
            on_ready(listener.local_addr()?);
            self.serve(listener, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
        })
    }
}
