//! A bounded load test of a running `crossglg serve`: `clients` threads for a fixed time, each
//! sending recognitions and, every `enroll_every`-th request, an enroll of a class of its own;
//! then a check that every enrolled class is in the gallery. Reports throughput, latency
//! percentiles per kind, errors and lost enrolls.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use crate::BenchError;
use crossglg_infer::stats::percentile;

#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `http://host:port` of the server.
    pub url: String,
    pub clients: usize,
    pub seconds: f64,
    /// Every n-th request of a client enrolls (0: never).
    pub enroll_every: usize,
    /// Frames per sequence sent.
    pub frames: usize,
    /// Bearer token, if the server wants one.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct KindStats {
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub clients: usize,
    pub seconds: f64,
    pub frames: usize,
    pub requests: usize,
    pub throughput_per_s: f64,
    pub recognize: KindStats,
    pub enroll: KindStats,
    /// Enrolls answered 201 whose class is missing from the gallery afterwards.
    pub lost_enrolls: usize,
    /// The first few error messages.
    pub error_samples: Vec<String>,
}

impl LoadReport {
    pub fn table(&self) -> String {
        let row = |k: &str, s: &KindStats| {
            format!(
                "| {k} | {} | {} | {:.1} | {:.1} | {:.1} |\n",
                s.requests, s.errors, s.p50_ms, s.p99_ms, s.max_ms
            )
        };
        format!(
            "{} clients, {:.0} s, {}-frame sequences: {} requests, {:.1} requests/s, {} lost enrolls\n\n\
             | kind | requests | errors | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|---|\n{}{}",
            self.clients,
            self.seconds,
            self.frames,
            self.requests,
            self.throughput_per_s,
            self.lost_enrolls,
            row("recognize", &self.recognize),
            row("enroll", &self.enroll)
        )
    }
}

fn load_err(msg: impl Into<String>) -> BenchError {
    BenchError::Load(msg.into())
}

struct Client {
    agent: ureq::Agent,
    base: String,
    auth: Option<String>,
}

impl Client {
    /// (status, body); transport failures are errors.
    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let resp = match body {
            None => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            Some(b) => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    _ => return Err(format!("method {method}")),
                };
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.header("Content-Type", "application/json")
                    .send(b.to_string())
            }
        }
        .map_err(|e| format!("{path}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .into_body()
            .read_to_string()
            .map_err(|e| format!("{path}: {e}"))?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }
}

/// A swaying sequence of `joints` joints; `seed` shifts it so classes differ.
fn sequence(joints: usize, frames: usize, seed: f64) -> Value {
    let fr: Vec<Vec<[f64; 3]>> = (0..frames)
        .map(|t| {
            (0..joints)
                .map(|v| {
                    let v = v as f64;
                    let s = (t as f64 * 0.2 + v + seed).sin() * 0.1;
                    [
                        0.1 * v + s,
                        1.0 - 0.05 * v + seed * 0.01,
                        0.05 * (v + seed).cos(),
                    ]
                })
                .collect()
        })
        .collect();
    json!({ "frames": fr })
}

fn stats(mut ms: Vec<f64>, errors: usize) -> KindStats {
    ms.sort_by(f64::total_cmp);
    KindStats {
        requests: ms.len() + errors,
        errors,
        p50_ms: percentile(&ms, 0.5),
        p99_ms: percentile(&ms, 0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

pub fn run_load(cfg: &LoadConfig) -> Result<LoadReport, BenchError> {
    if cfg.clients == 0 || cfg.seconds <= 0.0 || cfg.frames == 0 {
        return Err(load_err(
            "--clients, --seconds and --frames must be positive",
        ));
    }
    let client = || Client {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into(),
        base: cfg.url.trim_end_matches('/').to_string(),
        auth: cfg.token.as_ref().map(|t| format!("Bearer {t}")),
    };
    let c = client();
    let (st, model) = c.send("GET", "/api/model", None).map_err(load_err)?;
    if st != 200 {
        return Err(load_err(format!("GET /api/model answered {st}: {model}")));
    }
    let joints = model["layout"]["joints"]
        .as_array()
        .map(Vec::len)
        .ok_or_else(|| load_err("GET /api/model: no layout"))?;
    // one class so recognitions have something to compare with
    let (st, v) = c
        .send(
            "POST",
            "/api/classes/load-base",
            Some(&sequence(joints, cfg.frames, 0.0)),
        )
        .map_err(load_err)?;
    if st != 201 {
        return Err(load_err(format!("enroll answered {st}: {v}")));
    }
    let stop = Instant::now() + Duration::from_secs_f64(cfg.seconds);
    let started = Instant::now();
    type Outcome = (Vec<f64>, Vec<f64>, usize, usize, Vec<String>, Vec<String>);
    let results: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..cfg.clients)
            .map(|k| {
                let c = client();
                s.spawn(move || {
                    let (mut rec, mut enr) = (Vec::new(), Vec::new());
                    let (mut rec_err, mut enr_err) = (0, 0);
                    let (mut enrolled, mut errors) = (Vec::new(), Vec::new());
                    let query = sequence(joints, cfg.frames, 1.0 + k as f64);
                    let mut i = 0usize;
                    while Instant::now() < stop {
                        i += 1;
                        let enroll = cfg.enroll_every > 0 && i.is_multiple_of(cfg.enroll_every);
                        let t = Instant::now();
                        let (path, want) = if enroll {
                            (format!("/api/classes/load-{k}-{i}"), 201)
                        } else {
                            ("/api/recognize".to_string(), 200)
                        };
                        let r = c.send("POST", &path, Some(&query));
                        let ms = t.elapsed().as_secs_f64() * 1e3;
                        let ok = matches!(&r, Ok((st, _)) if *st == want);
                        if !ok && errors.len() < 5 {
                            errors.push(match r {
                                Ok((st, v)) => format!("{path}: {st} {v}"),
                                Err(e) => e,
                            });
                        }
                        match (enroll, ok) {
                            (true, true) => {
                                enr.push(ms);
                                enrolled.push(format!("load-{k}-{i}"));
                            }
                            (true, false) => enr_err += 1,
                            (false, true) => rec.push(ms),
                            (false, false) => rec_err += 1,
                        }
                    }
                    (rec, enr, rec_err, enr_err, enrolled, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("load client panicked"))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let (_, classes) = c.send("GET", "/api/classes", None).map_err(load_err)?;
    let present: std::collections::HashSet<&str> = classes["classes"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    let (mut rec, mut enr, mut rec_err, mut enr_err) = (Vec::new(), Vec::new(), 0, 0);
    let (mut lost, mut samples) = (0, Vec::new());
    for (r, e, re, ee, enrolled, errors) in results {
        rec.extend(r);
        enr.extend(e);
        rec_err += re;
        enr_err += ee;
        lost += enrolled
            .iter()
            .filter(|n| !present.contains(n.as_str()))
            .count();
        samples.extend(errors);
    }
    samples.truncate(5);
    let requests = rec.len() + enr.len() + rec_err + enr_err;
    Ok(LoadReport {
        clients: cfg.clients,
        seconds: elapsed,
        frames: cfg.frames,
        requests,
        throughput_per_s: requests as f64 / elapsed,
        recognize: stats(rec, rec_err),
        enroll: stats(enr, enr_err),
        lost_enrolls: lost,
        error_samples: samples,
    })
}
