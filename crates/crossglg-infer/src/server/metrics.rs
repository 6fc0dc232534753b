//! Request counts and latency quantiles per route, in the Prometheus text format.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::stats::percentile;

/// Latencies kept per route for the quantiles: the most recent ones, so memory stays bounded
/// however long the server runs.
const WINDOW: usize = 2048;

#[derive(Default)]
struct Route {
    /// Requests by status code.
    counts: BTreeMap<u16, u64>,
    recent_ms: VecDeque<f64>,
    sum_ms: f64,
    total: u64,
}

#[derive(Default)]
pub(crate) struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, ms: f64) {
        let mut routes = self.routes.lock().expect("metrics lock poisoned");
        let r = routes.entry(route.to_string()).or_default();
        *r.counts.entry(status).or_default() += 1;
        if r.recent_ms.len() == WINDOW {
            r.recent_ms.pop_front();
        }
        r.recent_ms.push_back(ms);
        r.sum_ms += ms;
        r.total += 1;
    }

    fn text(&self) -> String {
        let routes = self.routes.lock().expect("metrics lock poisoned");
        let mut out = String::new();
        out += "# HELP crossglg_requests_total HTTP requests by route and status.\n";
        out += "# TYPE crossglg_requests_total counter\n";
        for (route, r) in routes.iter() {
            for (status, n) in &r.counts {
                out += &format!(
                    "crossglg_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
                );
            }
        }
        out += "# HELP crossglg_request_duration_seconds Request latency by route (quantiles over the last 2048 requests).\n";
        out += "# TYPE crossglg_request_duration_seconds summary\n";
        for (route, r) in routes.iter() {
            let mut v: Vec<f64> = r.recent_ms.iter().copied().collect();
            v.sort_by(f64::total_cmp);
            for q in [0.5, 0.9, 0.99] {
                out += &format!(
                    "crossglg_request_duration_seconds{{route=\"{route}\",quantile=\"{q}\"}} {}\n",
                    percentile(&v, q) / 1e3
                );
            }
            out += &format!(
                "crossglg_request_duration_seconds_sum{{route=\"{route}\"}} {}\n",
                r.sum_ms / 1e3
            );
            out += &format!(
                "crossglg_request_duration_seconds_count{{route=\"{route}\"}} {}\n",
                r.total
            );
        }
        out
    }
}

/// Records every request under its route pattern (`/api/classes/{name}`, not the name asked
/// for, so the label set stays bounded); unmatched paths count as `other`.
pub(crate) async fn track(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_string(), |m| m.as_str().to_string());
    let start = Instant::now();
    let resp = next.run(req).await;
    s.metrics.record(
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64() * 1e3,
    );
    resp
}

pub(crate) async fn render(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.text(),
    )
        .into_response()
}
