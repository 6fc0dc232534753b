//! The HTTP server over a real loopback socket, with a model-free embedder: every route, the
//! malformed requests, the limits, authentication, persistence, concurrency and the stream.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossglg_data::{Layout, Skeleton};
use crossglg_infer::embedder::{Describer, EmbedError, Embedder};
use crossglg_infer::gallery::Gallery;
use crossglg_infer::server::{ServeOptions, ServedModel, Server};
use serde_json::{json, Value};

/// Mean pose over time (joints × 3) as the embedding, the per-joint motion energy as the
/// "joint importance": cheap and deterministic, and distinct motions give distinct embeddings.
struct MeanPose {
    joints: usize,
}

impl Embedder for MeanPose {
    fn embed(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        skeletons
            .iter()
            .map(|sk| {
                if sk.joints != self.joints {
                    return Err(EmbedError::new(format!("{} joints", sk.joints)));
                }
                let mut e = vec![0.0; self.joints * 3];
                for t in 0..sk.frames {
                    for v in 0..sk.joints {
                        for c in 0..3.min(sk.channels) {
                            e[v * 3 + c] += sk.get(0, t, v, c) / sk.frames as f32;
                        }
                    }
                }
                Ok(e)
            })
            .collect()
    }
    fn dim(&self) -> usize {
        self.joints * 3
    }
    fn model_hash(&self) -> Option<String> {
        Some("meanpose-1".into())
    }
    fn joint_importance(&self, sk: &Skeleton) -> Result<Option<Vec<f32>>, EmbedError> {
        Ok(Some((0..sk.joints).map(|v| v as f32).collect()))
    }
}

struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// "Descriptions" of classes by where joint 0 sits on x: a sequence is as like a class as its
/// mean x is near the class's anchor.
struct Anchors(Vec<String>, Vec<f32>);

impl Describer for Anchors {
    fn classes(&self) -> &[String] {
        &self.0
    }
    fn describe(&self, skeletons: &[Skeleton]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(skeletons
            .iter()
            .map(|sk| {
                let x = (0..sk.frames).map(|t| sk.get(0, t, 0, 0)).sum::<f32>() / sk.frames as f32;
                self.1.iter().map(|a| -(x - a).abs()).collect()
            })
            .collect())
    }
}

fn start(gallery: &Path, opts: ServeOptions) -> Running {
    start_described(gallery, opts, None)
}

fn start_described(
    gallery: &Path,
    opts: ServeOptions,
    describer: Option<Arc<dyn Describer + Send + Sync>>,
) -> Running {
    let layout = Layout::load("ntu25").unwrap();
    let model = ServedModel {
        embedder: Arc::new(MeanPose { joints: 25 }),
        layout,
        mapping: None,
        model_id: "meanpose".into(),
        threshold: Some(0.5),
        describer,
    };
    let server = Server::new(model, gallery.to_path_buf(), opts).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            server
                .serve(l, async {
                    let _ = stop_rx.await;
                })
                .await
                .unwrap();
        });
    });
    Running {
        addr: rx.recv().unwrap(),
        stop: Some(stop_tx),
        thread: Some(thread),
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// (status, JSON body) of a request.
fn call(
    method: &str,
    url: &str,
    body: Option<(&str, Vec<u8>)>,
    token: Option<&str>,
) -> (u16, Value) {
    let a = agent();
    let auth = token.map(|t| format!("Bearer {t}"));
    let resp = match (method, body) {
        ("GET", _) => {
            let mut r = a.get(url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        ("DELETE", _) => {
            let mut r = a.delete(url);
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            r.call()
        }
        (m, b) => {
            let mut r = match m {
                "POST" => a.post(url),
                "PATCH" => a.patch(url),
                _ => unreachable!(),
            };
            if let Some(h) = &auth {
                r = r.header("Authorization", h);
            }
            let (ct, bytes) = b.unwrap_or(("application/json", Vec::new()));
            r.header("Content-Type", ct).send(&bytes[..])
        }
    }
    .unwrap();
    let status = resp.status().as_u16();
    let text = resp.into_body().read_to_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

fn post_json(url: &str, v: &Value) -> (u16, Value) {
    call(
        "POST",
        url,
        Some(("application/json", v.to_string().into_bytes())),
        None,
    )
}

/// A 25-joint sequence whose joints sit at `offset + v · (1, 0.5, 0.1)` and sway over time.
fn seq(offset: f64, frames: usize) -> Value {
    let fr: Vec<Vec<[f64; 3]>> = (0..frames)
        .map(|t| {
            (0..25)
                .map(|v| {
                    let v = v as f64;
                    let s = (t as f64 * 0.3).sin() * 0.05;
                    [offset + v + s, 0.5 * v * offset.cos(), 0.1 * v + offset]
                })
                .collect()
        })
        .collect();
    json!(fr)
}

fn tmp_gallery() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("g.gallery");
    (d, p)
}

/// With descriptions served, every recognition also answers from them: zero-shot among the
/// described classes, and the description prior over the gallery, which at weight 0 is the
/// gallery's own decision and at 1 the descriptions'; a gallery class without a description
/// turns the prior off and is named.
#[test]
fn described_classes_answer_beside_the_gallery() {
    let (_d, path) = tmp_gallery();
    let names = ["wave", "kick", "sit", "far"].map(String::from).to_vec();
    let anchors = Anchors(names, vec![1.0, 5.0, 9.0, 100.0]);
    let s = start_described(&path, ServeOptions::default(), Some(Arc::new(anchors)));
    let (_, v) = call("GET", &s.url("/api/model"), None, None);
    assert_eq!(
        v["described_classes"],
        json!(["wave", "kick", "sit", "far"])
    );
    // before anything is enrolled the descriptions answer alone
    let (st, v) = post_json(&s.url("/api/recognize"), &json!({"frames": seq(8.9, 12)}));
    assert_eq!(st, 200, "{v}");
    let r = &v["results"][0];
    assert!(r["recognition"].is_null() && r["top"] == json!([]), "{r}");
    assert_eq!(r["described"]["zero_shot"]["class"], "sit", "{r}");
    assert!(r["described"]["prior"].is_null(), "{r}");
    // and so does the stream (window 64 by default: send 64 frames)
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/api/stream", s.addr)).unwrap();
    for f in seq(8.9, 64).as_array().unwrap() {
        ws.send(tungstenite::Message::text(json!({"joints": f}).to_string()))
            .unwrap();
    }
    let v: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    assert!(v["recognition"].is_null(), "{v}");
    assert_eq!(v["described"]["zero_shot"]["class"], "sit", "{v}");
    ws.close(None).unwrap();
    for (name, off) in [("wave", 1.0), ("kick", 5.0), ("sit", 9.0)] {
        let (st, v) = post_json(
            &s.url(&format!("/api/classes/{name}")),
            &json!({"frames": seq(off, 12)}),
        );
        assert_eq!(st, 201, "{v}");
    }
    let queries = json!({"sequences": [{"frames": seq(5.2, 20)}, {"frames": seq(8.7, 9)}, {"frames": seq(1.4, 9)}]});
    let results = |q: &str| -> Vec<Value> {
        let (st, v) = post_json(&s.url(&format!("/api/recognize{q}")), &queries);
        assert_eq!(st, 200, "{v}");
        v["results"].as_array().unwrap().clone()
    };
    let plain = results("?text_prior=0");
    let zero_shot: Vec<&str> = plain
        .iter()
        .map(|r| r["described"]["zero_shot"]["class"].as_str().unwrap())
        .collect();
    assert_eq!(zero_shot, ["kick", "sit", "wave"]);
    for r in &plain {
        let d = &r["described"];
        assert!(d["zero_shot"]["similarity"].is_null(), "{r}");
        assert_eq!(d["prior"]["class"], r["recognition"]["class"], "{r}");
        assert_eq!(
            d["prior"]["similarity"], r["recognition"]["similarity"],
            "{r}"
        );
    }
    for r in results("?text_prior=1") {
        assert_eq!(
            r["described"]["prior"]["class"],
            r["described"]["zero_shot"]["class"]
        );
    }
    for r in results("") {
        assert!(r["described"]["prior"]["score"].is_number(), "{r}");
    }
    let (st, v) = post_json(&s.url("/api/recognize?text_prior=2"), &queries);
    assert_eq!(st, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("text_prior"), "{v}");
    // a class the descriptions do not know: no prior, and it is named
    let (st, _) = post_json(
        &s.url("/api/classes/mystery"),
        &json!({"frames": seq(3.0, 12)}),
    );
    assert_eq!(st, 201);
    for r in results("") {
        assert!(r["described"]["prior"].is_null(), "{r}");
        assert_eq!(r["described"]["undescribed"], json!(["mystery"]));
        assert!(r["described"]["zero_shot"]["class"].is_string());
    }
    // the stream's windows carry the same answers (window 64 by default: send 64 frames)
    let (mut ws, _) =
        tungstenite::connect(format!("ws://{}/api/stream?text_prior=0", s.addr)).unwrap();
    for f in seq(8.8, 64).as_array().unwrap() {
        ws.send(tungstenite::Message::text(json!({"joints": f}).to_string()))
            .unwrap();
    }
    let v: Value = serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap();
    assert_eq!(v["described"]["zero_shot"]["class"], "sit", "{v}");
    assert_eq!(v["described"]["undescribed"], json!(["mystery"]), "{v}");
    let e = tungstenite::connect(format!("ws://{}/api/stream?text_prior=-1", s.addr));
    assert!(e.is_err(), "a weight out of range is refused");
}

#[test]
fn enroll_recognize_list_rename_delete_and_persist() {
    let (_d, path) = tmp_gallery();
    let s = start(&path, ServeOptions::default());
    let (st, v) = call("GET", &s.url("/health"), None, None);
    assert_eq!((st, v["status"].as_str()), (200, Some("ok")));
    let (st, v) = call("GET", &s.url("/api/model"), None, None);
    assert_eq!(st, 200);
    assert_eq!(v["layout"]["joints"].as_array().unwrap().len(), 25);
    assert_eq!(v["dim"], 75);

    // recognising against an empty gallery is a conflict, not a crash
    let (st, v) = post_json(&s.url("/api/recognize"), &json!({"frames": seq(1.0, 10)}));
    assert_eq!(st, 409, "{v}");

    for (name, off) in [("wave", 1.0), ("kick", 5.0), ("sit", 9.0)] {
        let (st, v) = post_json(
            &s.url(&format!("/api/classes/{name}")),
            &json!({"frames": seq(off, 12)}),
        );
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["class"], name);
    }
    // two examples at once
    let (st, v) = post_json(
        &s.url("/api/classes/wave"),
        &json!({"sequences": [{"frames": seq(1.1, 8)}, {"name": "w3", "frames": seq(0.9, 8)}]}),
    );
    assert_eq!(
        (st, v["added"].as_u64(), v["exemplars"].as_u64()),
        (201, Some(2), Some(3))
    );

    let (st, v) = post_json(
        &s.url("/api/recognize?top=2"),
        &json!({"sequences": [{"frames": seq(5.05, 20)}, {"frames": seq(9.1, 5)}]}),
    );
    assert_eq!(st, 200, "{v}");
    let r = v["results"].as_array().unwrap();
    assert_eq!(r[0]["recognition"]["class"], "kick");
    assert_eq!(r[1]["recognition"]["class"], "sit");
    assert_eq!(r[0]["top"].as_array().unwrap().len(), 2);
    assert_eq!(r[0]["joint_importance"].as_array().unwrap().len(), 25);
    assert!(
        r[0].get("described").is_none(),
        "no descriptions served: {}",
        r[0]
    );

    let (st, v) = post_json(&s.url("/api/embed"), &json!({"frames": seq(1.0, 4)}));
    assert_eq!(
        (st, v["results"][0]["embedding"].as_array().unwrap().len()),
        (200, 75)
    );
    let (st, v) = post_json(&s.url("/api/decode"), &json!({"frames": seq(1.0, 4)}));
    assert_eq!(
        (st, v["results"][0]["skeleton"]["frames"].as_u64()),
        (200, Some(4))
    );

    let (st, v) = call(
        "PATCH",
        &s.url("/api/classes/kick"),
        Some(("application/json", br#"{"name": "kick ball"}"#.to_vec())),
        None,
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = call("DELETE", &s.url("/api/classes/sit"), None, None);
    assert_eq!(st, 200, "{v}");
    let (st, v) = call("DELETE", &s.url("/api/classes/sit"), None, None);
    assert_eq!(st, 404, "{v}");
    let (_, v) = call("GET", &s.url("/api/classes"), None, None);
    let names: Vec<&str> = v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["wave", "kick ball"]);

    // the metrics saw every route by its pattern
    let (st, m) = call("GET", &s.url("/metrics"), None, None);
    let m = m.as_str().unwrap().to_string();
    assert_eq!(st, 200);
    assert!(
        m.contains(r#"crossglg_requests_total{route="/api/classes/{name}",status="201"} 4"#),
        "{m}"
    );
    assert!(
        m.contains(r#"crossglg_request_duration_seconds{route="/api/recognize",quantile="0.99"}"#),
        "{m}"
    );

    // a restart finds what was enrolled (the file is written after each change)
    drop(s);
    let g = Gallery::load(&path).unwrap();
    assert_eq!(g.classes, ["wave", "kick ball"]);
    assert_eq!(g.model_hash.as_deref(), Some("meanpose-1"));
    let s = start(&path, ServeOptions::default());
    let (_, v) = post_json(&s.url("/api/recognize"), &json!({"frames": seq(5.0, 6)}));
    assert_eq!(v["results"][0]["recognition"]["class"], "kick ball");
}

#[test]
fn malformed_requests_get_4xx_with_a_message() {
    let (_d, path) = tmp_gallery();
    let opts = ServeOptions {
        max_body_bytes: 64 << 10,
        max_frames: 50,
        max_sequences: 3,
        window: 16,
        ..ServeOptions::default()
    };
    let s = start(&path, opts);
    post_json(&s.url("/api/classes/a"), &json!({"frames": seq(1.0, 5)}));
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "/api/recognize",
            "application/json",
            b"{\"frames\": ".to_vec(),
            400,
            "invalid JSON",
        ),
        (
            "/api/recognize",
            "application/json",
            b"[1, 2]".to_vec(),
            400,
            "invalid JSON",
        ),
        (
            "/api/recognize",
            "application/json",
            b"{}".to_vec(),
            400,
            "either `frames`",
        ),
        (
            "/api/recognize",
            "application/json",
            b"".to_vec(),
            400,
            "empty",
        ),
        (
            "/api/recognize",
            "application/json",
            br#"{"frames": []}"#.to_vec(),
            422,
            "no frames",
        ),
        (
            "/api/recognize",
            "application/json",
            br#"{"frames": [[[1, 2, 3]]]}"#.to_vec(),
            422,
            "has 1 joints",
        ),
        (
            "/api/recognize",
            "application/json",
            json!({"frames": [vec![[1.0, 2.0, 3.0, 4.0]; 25]]})
                .to_string()
                .into_bytes(),
            422,
            "4 values",
        ),
        (
            "/api/recognize",
            "application/json",
            json!({"frames": [vec![[1e9, 2.0, 3.0]; 25]]})
                .to_string()
                .into_bytes(),
            422,
            "finite coordinate",
        ),
        (
            "/api/recognize",
            "application/json",
            json!({"frames": [vec![[0.0, 0.0, 0.0]; 25]]})
                .to_string()
                .into_bytes(),
            422,
            "every coordinate is zero",
        ),
        (
            "/api/recognize",
            "application/json",
            json!({"frames": seq(1.0, 51)}).to_string().into_bytes(),
            413,
            "at most 50",
        ),
        (
            "/api/recognize",
            "application/json",
            json!({"sequences": vec![json!({"frames": seq(1.0, 2)}); 4]})
                .to_string()
                .into_bytes(),
            413,
            "at most 3",
        ),
        (
            "/api/recognize",
            "application/json",
            json!({"frames": seq(1.0, 3), "mapping": "../../etc/x"})
                .to_string()
                .into_bytes(),
            400,
            "unknown mapping",
        ),
        (
            "/api/recognize",
            "application/json",
            vec![b' '; 70 << 10],
            413,
            "limit",
        ),
        (
            "/api/recognize",
            "application/octet-stream",
            b"garbage".to_vec(),
            400,
            "filename",
        ),
        (
            "/api/recognize?filename=../../x.npy",
            "application/octet-stream",
            b"garbage".to_vec(),
            422,
            "x.npy",
        ),
        (
            "/api/recognize?filename=a%20b.npy",
            "application/octet-stream",
            b"garbage".to_vec(),
            400,
            "letters, digits",
        ),
        (
            "/api/recognize?filename=.hidden",
            "application/octet-stream",
            b"garbage".to_vec(),
            400,
            "letters, digits",
        ),
        (
            "/api/recognize?filename=x.npy&layout=/etc/passwd",
            "application/octet-stream",
            b"garbage".to_vec(),
            400,
            "layout",
        ),
        (
            "/api/recognize?bogus=1",
            "application/json",
            json!({"frames": seq(1.0, 3)}).to_string().into_bytes(),
            400,
            "bogus",
        ),
        (
            "/api/classes/%20",
            "application/json",
            json!({"frames": seq(1.0, 3)}).to_string().into_bytes(),
            400,
            "class names",
        ),
    ];
    for (route, ct, body, want, needle) in cases {
        let (st, v) = call("POST", &s.url(route), Some((ct, body)), None);
        let msg = v["error"].as_str().unwrap_or_default().to_string();
        assert_eq!(st, want, "{route}: {v}");
        assert!(msg.contains(needle), "{route}: `{msg}` lacks `{needle}`");
        assert!(
            !msg.contains("/tmp/"),
            "{route}: leaks a server path: {msg}"
        );
    }
    let (st, v) = call(
        "PATCH",
        &s.url("/api/classes/a"),
        Some(("application/json", b"{\"to\": 1}".to_vec())),
        None,
    );
    assert_eq!(st, 400, "{v}");
    let (st, _) = call("GET", &s.url("/api/nothing"), None, None);
    assert_eq!(st, 404);
    // still serving, nothing changed
    let (_, v) = call("GET", &s.url("/api/classes"), None, None);
    assert_eq!(v["classes"].as_array().unwrap().len(), 1);
}

#[test]
fn token_guards_the_api_but_not_the_page() {
    let (_d, path) = tmp_gallery();
    let opts = ServeOptions {
        token: Some("s3cret".into()),
        ..ServeOptions::default()
    };
    let s = start(&path, opts);
    assert_eq!(call("GET", &s.url("/api/classes"), None, None).0, 401);
    assert_eq!(call("GET", &s.url("/metrics"), None, None).0, 401);
    assert_eq!(
        call("GET", &s.url("/api/classes"), None, Some("wrong")).0,
        401
    );
    assert_eq!(
        call("GET", &s.url("/api/classes"), None, Some("s3cret")).0,
        200
    );
    assert_eq!(call("GET", &s.url("/health"), None, None).0, 200);
    let (st, page) = call("GET", &s.url("/"), None, None);
    assert_eq!(st, 200);
    assert!(page.as_str().unwrap().contains("<canvas"));
    let (st, js) = call("GET", &s.url("/app.js"), None, None);
    assert!(st == 200 && js.as_str().unwrap().contains("selftest"));
}

/// Concurrent enrolls from many clients into one server: no class is lost.
#[test]
fn concurrent_enrolls_over_http_lose_nothing() {
    let (_d, path) = tmp_gallery();
    let s = start(&path, ServeOptions::default());
    std::thread::scope(|sc| {
        for i in 0..20 {
            let url = s.url(&format!("/api/classes/c{i}"));
            sc.spawn(move || {
                let (st, v) = post_json(&url, &json!({"frames": seq(i as f64, 6)}));
                assert_eq!(st, 201, "{v}");
            });
        }
    });
    let (_, v) = call("GET", &s.url("/api/classes"), None, None);
    assert_eq!(v["classes"].as_array().unwrap().len(), 20);
    assert_eq!(Gallery::load(&path).unwrap().classes.len(), 20);
}

#[test]
fn stream_answers_windows_and_survives_bad_frames() {
    let (_d, path) = tmp_gallery();
    let opts = ServeOptions {
        window: 8,
        hop: 4,
        ..ServeOptions::default()
    };
    let s = start(&path, opts);
    // nothing enrolled and no descriptions: no stream
    match tungstenite::connect(format!("ws://{}/api/stream", s.addr)) {
        Err(tungstenite::Error::Http(r)) => assert_eq!(r.status(), 409),
        other => panic!("expected 409, got {:?}", other.map(|(_, r)| r.status())),
    }
    post_json(&s.url("/api/classes/kick"), &json!({"frames": seq(5.0, 8)}));
    post_json(&s.url("/api/classes/wave"), &json!({"frames": seq(1.0, 8)}));
    let (mut ws, _) = tungstenite::connect(format!("ws://{}/api/stream", s.addr)).unwrap();
    let frames = seq(5.0, 16);
    for (t, f) in frames.as_array().unwrap().iter().enumerate() {
        ws.send(tungstenite::Message::text(json!({"joints": f}).to_string()))
            .unwrap();
        if t == 3 {
            ws.send(tungstenite::Message::text("{not json")).unwrap();
        }
    }
    let mut events = Vec::new();
    let mut errors = Vec::new();
    while events.len() < 3 {
        let m = ws.read().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        if v.get("error").is_some() {
            errors.push(v);
        } else {
            events.push(v);
        }
    }
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0]["error"].as_str().unwrap().contains("line 5"),
        "{errors:?}"
    );
    assert!(
        events.iter().all(|e| e["recognition"]["class"] == "kick"),
        "{events:?}"
    );
    // 16 good frames, window 8, hop 4: windows end at frames 7, 11, 15
    assert_eq!(
        events
            .iter()
            .map(|e| e["frame_index"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [7, 11, 15]
    );
    ws.close(None).unwrap();
}

/// Mutated request bodies (JSON and file uploads) against one running server: every answer is
/// a success or a 4xx with a JSON message, never a 5xx or a dropped connection, and the server
/// still answers afterwards.
#[test]
fn mutated_bodies_get_answers_not_crashes() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    let (_d, path) = tmp_gallery();
    let s = start(&path, ServeOptions::default());
    post_json(&s.url("/api/classes/a"), &json!({"frames": seq(1.0, 4)}));
    let valid = json!({"frames": seq(2.0, 3)}).to_string().into_bytes();
    let mut runner = TestRunner::new(Config {
        cases: 120,
        ..Config::default()
    });
    let edits = proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6);
    runner
        .run(&(edits, any::<bool>()), |(edits, as_file)| {
            let b = crossglg_data::fuzz::mutate(valid.clone(), &edits);
            let (route, ct) = if as_file {
                ("/api/recognize?filename=x.json", "application/octet-stream")
            } else {
                ("/api/recognize", "application/json")
            };
            let (st, v) = call("POST", &s.url(route), Some((ct, b)), None);
            prop_assert!(st == 200 || (400..500).contains(&st), "{st}: {v}");
            prop_assert!(st == 200 || v["error"].is_string(), "{st}: {v}");
            Ok(())
        })
        .unwrap();
    assert_eq!(call("GET", &s.url("/health"), None, None).0, 200);
}
