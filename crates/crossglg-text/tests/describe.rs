//! `describe` against an in-process chat-completions server (hand-written HTTP/1.1 on
//! 127.0.0.1:0): normal answers, 500s, 429, timeouts, malformed bodies, refusals, and resuming
//! from the cache after a failed run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossglg_data::Layout;
use crossglg_text::llm::{describe, describe_to_file, DescribeError, LlmConfig, LlmError};
use crossglg_text::prompt::AnswerError;
use crossglg_text::{validate, DescriptionFile};
use serde_json::{json, Value};

/// What the fake server does with one request.
enum Reply {
    /// 200 with this assistant text.
    Answer(String),
    /// 200 with `message.refusal` set.
    RefusalField(String),
    Status(u16, String),
    /// A 200 whose body is not JSON.
    Garbage,
    /// Sleep this long before answering normally.
    Slow(Duration),
}

type Handler = dyn Fn(usize, &str, &Value) -> Reply + Send + Sync;

struct Server {
    url: String,
    requests: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<String>>>,
}

fn answer_for(prompt: &str, layout_joints: &[String]) -> String {
    let action = prompt.split('"').nth(1).unwrap_or("unknown").to_string();
    if prompt.contains("key_joints") {
        json!({
            "description": format!("To {action}, the person moves the right hand up to the head."),
            "key_joints": ["right_hand", "head"]
        })
        .to_string()
    } else {
        let joints: serde_json::Map<String, Value> = layout_joints
            .iter()
            .map(|j| (j.clone(), json!(format!("{j} during {action}"))))
            .collect();
        // Wrapped in prose and a code fence, as chat models like to answer.
        format!(
            "Here you are:\n```json\n{}\n```",
            json!({ "joints": joints })
        )
    }
}

fn read_request(stream: &mut TcpStream) -> Option<(String, String, String)> {
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut len = 0;
    let mut auth = String::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        if k.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse().ok()?;
        }
        if k.eq_ignore_ascii_case("authorization") {
            auth = v.trim().to_string();
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).ok()?;
    Some((path, auth, String::from_utf8(body).ok()?))
}

fn respond(stream: &mut TcpStream, status: u16, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.flush();
}

fn completion(content: &str) -> String {
    json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}).to_string()
}

fn serve(handler: Arc<Handler>) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (rq, sn) = (requests.clone(), seen.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (handler, rq, sn) = (handler.clone(), rq.clone(), sn.clone());
            std::thread::spawn(move || {
                let Some((path, auth, body)) = read_request(&mut stream) else {
                    return;
                };
                assert_eq!(path, "/v1/chat/completions");
                assert_eq!(auth, "Bearer test-key-123");
                let v: Value = serde_json::from_str(&body).unwrap();
                let prompt = v["messages"][0]["content"].as_str().unwrap().to_string();
                let n = rq.fetch_add(1, Ordering::SeqCst);
                sn.lock().unwrap().push(prompt.clone());
                match handler(n, &prompt, &v) {
                    Reply::Answer(a) => respond(&mut stream, 200, &completion(&a)),
                    Reply::RefusalField(r) => respond(
                        &mut stream,
                        200,
                        &json!({"choices": [{"message": {"role": "assistant", "content": null, "refusal": r}}]}).to_string(),
                    ),
                    Reply::Status(s, b) => respond(&mut stream, s, &b),
                    Reply::Garbage => respond(&mut stream, 200, "{\"choices\": [oops"),
                    Reply::Slow(d) => {
                        std::thread::sleep(d);
                        let joints = Layout::builtin("ntu25").unwrap().joints;
                        respond(&mut stream, 200, &completion(&answer_for(&prompt, &joints)));
                    }
                }
            });
        }
    });
    Server {
        url,
        requests,
        seen,
    }
}

const KEY_VAR: &str = "CROSSGLG_TEST_LLM_KEY";

fn config(url: &str, cache: &std::path::Path) -> LlmConfig {
    // Every test sets the same value, so parallel tests cannot disturb each other.
    // SAFETY-free: set_var is safe in edition 2021.
    std::env::set_var(KEY_VAR, "test-key-123");
    let mut cfg = LlmConfig::new("fake-model", "toy", cache);
    cfg.base_url = url.to_string();
    cfg.api_key_env = Some(KEY_VAR.into());
    cfg.retries = 3;
    cfg.backoff = Duration::from_millis(1);
    cfg.timeout = Duration::from_secs(5);
    cfg.concurrency = 3;
    cfg
}

fn classes() -> Vec<String> {
    [
        "drink water",
        "kicking something",
        "hand waving",
        "sit down",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn normal(joints: Vec<String>) -> Arc<Handler> {
    Arc::new(move |_, p: &str, _: &Value| Reply::Answer(answer_for(p, &joints)))
}

#[test]
fn describe_writes_a_valid_file_and_second_run_is_all_cache() {
    let layout = Layout::builtin("ntu25").unwrap();
    let server = serve(normal(layout.joints.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server.url, &dir.path().join("cache"));
    let (file, stats) = describe(&cfg, &classes(), &layout).unwrap();
    assert_eq!(stats.requested, 8);
    assert_eq!(server.requests.load(Ordering::SeqCst), 8);
    validate(&file, &layout, "described").unwrap();
    assert_eq!(file.classes[1].name, "kicking something");
    assert_eq!(file.classes[1].id, 1);
    assert_eq!(file.classes[1].key_joints, ["right_hand", "head"]);
    assert_eq!(
        file.classes[1].local["left_knee"],
        "left_knee during kicking something"
    );
    assert_eq!(
        file.provenance.global_prompt_sha256,
        cfg.global_prompt.sha256()
    );
    assert_eq!(file.provenance.model, "fake-model");
    // The prompts carry the action and the joint list.
    assert!(server
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|p| p.contains("\"sit down\"") && p.contains("right_thumb")));

    let out = dir.path().join("d.json");
    let stats = describe_to_file(&cfg, &classes(), &layout, &out).unwrap();
    assert_eq!(stats.from_cache, 8);
    let saved = DescriptionFile::load(&out).unwrap();
    assert_eq!(saved.classes, file.classes);
    assert_eq!(
        crossglg_text::validate_path(&out, None)
            .unwrap()
            .split(':')
            .count(),
        2
    );

    let (again, stats) = describe(&cfg, &classes(), &layout).unwrap();
    assert_eq!(stats.from_cache, 8);
    assert_eq!(server.requests.load(Ordering::SeqCst), 8, "no new requests");
    assert_eq!(again.classes, file.classes);

    // Another model or template means other cache entries.
    let mut other = cfg.clone();
    other.model = "other-model".into();
    describe(&other, &classes()[..1], &layout).unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 10);
}

#[test]
fn retries_on_500_429_garbage_and_timeouts() {
    let layout = Layout::builtin("ntu25").unwrap();
    let joints = layout.joints.clone();
    // Per prompt, the first attempts fail in a different way each; then it answers.
    let attempts = Arc::new(Mutex::new(std::collections::HashMap::<String, usize>::new()));
    let handler: Arc<Handler> = Arc::new(move |_, p: &str, _: &Value| {
        let k = {
            let mut a = attempts.lock().unwrap();
            let e = a.entry(p.to_string()).or_insert(0);
            *e += 1;
            *e
        };
        match k {
            1 => Reply::Status(500, "{\"error\": \"boom\"}".into()),
            2 => Reply::Status(429, "{\"error\": \"slow down\"}".into()),
            3 => Reply::Garbage,
            _ => Reply::Answer(answer_for(p, &joints)),
        }
    });
    let server = serve(handler);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server.url, dir.path());
    let (file, _) = describe(&cfg, &classes()[..2], &layout).unwrap();
    validate(&file, &layout, "x").unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), 4 * 4);

    // A server slower than the timeout: the first attempt times out, the retry succeeds.
    let slow_first = Arc::new(AtomicUsize::new(0));
    let joints = layout.joints.clone();
    let handler: Arc<Handler> = Arc::new(move |_, p: &str, _: &Value| {
        if slow_first.fetch_add(1, Ordering::SeqCst) == 0 {
            Reply::Slow(Duration::from_secs(4))
        } else {
            Reply::Answer(answer_for(p, &joints))
        }
    });
    let server = serve(handler);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server.url, dir.path());
    // Generous, so a loaded CI machine does not time out the normal answers too.
    cfg.timeout = Duration::from_millis(1000);
    cfg.concurrency = 1;
    let (file, _) = describe(&cfg, &classes()[..1], &layout).unwrap();
    assert_eq!(file.classes.len(), 1);
    assert_eq!(server.requests.load(Ordering::SeqCst), 3);
}

#[test]
fn refusal_is_a_clear_error_for_that_class_only() {
    let layout = Layout::builtin("ntu25").unwrap();
    let joints = layout.joints.clone();
    let handler: Arc<Handler> = Arc::new(move |_, p: &str, _: &Value| {
        if p.contains("\"hand waving\"") && p.contains("key_joints") {
            Reply::Answer("I'm sorry, but I can't help with that request.".into())
        } else if p.contains("\"sit down\"") && p.contains("key_joints") {
            Reply::RefusalField("I can't describe this.".into())
        } else {
            Reply::Answer(answer_for(p, &joints))
        }
    });
    let server = serve(handler);
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server.url, dir.path());
    let err = describe(&cfg, &classes(), &layout).unwrap_err();
    let msg = err.to_string();
    let DescribeError::Classes {
        failures, total, ..
    } = err
    else {
        panic!("{msg}")
    };
    assert_eq!(total, 8);
    let mut names: Vec<_> = failures.iter().map(|f| (f.class.as_str(), f.id)).collect();
    names.sort();
    assert_eq!(names, [("hand waving", 2), ("sit down", 3)]);
    for f in &failures {
        assert!(
            matches!(f.error, LlmError::Answer(AnswerError::Refused(_))),
            "{:?}",
            f.error
        );
    }
    assert!(
        msg.contains("refused") && msg.contains("hand waving"),
        "{msg}"
    );
    // Refusals are not retried: 8 requests in all.
    assert_eq!(server.requests.load(Ordering::SeqCst), 8);
}

#[test]
fn interrupted_run_resumes_from_cache() {
    let layout = Layout::builtin("ntu25").unwrap();
    let joints = layout.joints.clone();
    // The server answers 5 requests, then only fails (as if the provider went down).
    let handler: Arc<Handler> = Arc::new(move |n, p: &str, _: &Value| {
        if n < 5 {
            Reply::Answer(answer_for(p, &joints))
        } else {
            Reply::Status(503, "{\"error\": \"unavailable\"}".into())
        }
    });
    let server = serve(handler);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server.url, dir.path());
    cfg.retries = 1;
    let err = describe(&cfg, &classes(), &layout).unwrap_err();
    let DescribeError::Classes { failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 3, "{err}");
    assert!(err.to_string().contains("503"), "{err}");
    let cached = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(cached, 5, "finished answers are on disk");

    // Resume against a healthy server: only the 3 missing answers are requested.
    let fresh = serve(normal(layout.joints.clone()));
    let mut cfg2 = cfg.clone();
    cfg2.base_url = fresh.url.clone();
    let (file, stats) = describe(&cfg2, &classes(), &layout).unwrap();
    assert_eq!(fresh.requests.load(Ordering::SeqCst), 3);
    assert_eq!(stats.from_cache, 5);
    validate(&file, &layout, "resumed").unwrap();
}

#[test]
fn bad_key_stops_the_run() {
    let layout = Layout::builtin("ntu25").unwrap();
    let handler: Arc<Handler> =
        Arc::new(|_, _: &str, _: &Value| Reply::Status(401, "{\"error\": \"bad key\"}".into()));
    let server = serve(handler);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server.url, dir.path());
    cfg.concurrency = 1;
    let err = describe(&cfg, &classes(), &layout).unwrap_err();
    assert!(
        matches!(
            err,
            DescribeError::Client(LlmError::Status { status: 401, .. })
        ),
        "{err}"
    );
    assert_eq!(
        server.requests.load(Ordering::SeqCst),
        1,
        "stops after the first 401"
    );
    // The key itself never appears in messages.
    assert!(!err.to_string().contains("test-key-123"));
    assert!(!format!("{cfg:?}").contains("test-key-123"));

    let mut cfg = config(&server.url, dir.path());
    cfg.api_key_env = Some("CROSSGLG_TEST_SURELY_UNSET_VAR".into());
    let err = describe(&cfg, &classes(), &layout).unwrap_err();
    assert!(
        err.to_string().contains("CROSSGLG_TEST_SURELY_UNSET_VAR"),
        "{err}"
    );
}

/// A server that echoes the request's headers (a debugging proxy, a misconfigured gateway): as
/// an error body, and as the "answer". The key appears in no error, no cache file.
#[test]
fn echoed_key_never_reaches_messages_or_the_cache() {
    let layout = Layout::builtin("ntu25").unwrap();
    let echo = "POST /v1/chat/completions\nauthorization: Bearer test-key-123\n";
    for status in [400, 200] {
        let handler: Arc<Handler> = Arc::new(move |_, _: &str, _: &Value| {
            if status == 200 {
                Reply::Answer(echo.into())
            } else {
                Reply::Status(status, echo.into())
            }
        });
        let server = serve(handler);
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(&server.url, dir.path());
        cfg.concurrency = 1;
        cfg.retries = 1;
        let err = describe(&cfg, &classes(), &layout).unwrap_err().to_string();
        assert!(!err.contains("test-key-123"), "{status}: {err}");
        assert!(
            err.contains("[redacted]") || status == 200,
            "{status}: {err}"
        );
        for f in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let text = std::fs::read_to_string(f.path()).unwrap_or_default();
            assert!(!text.contains("test-key-123"), "{}", f.path().display());
        }
    }
}

/// A cache entry broken on disk (a torn write by an older build, a hand edit) is moved aside
/// and its class asked again; the run succeeds instead of failing on every later run.
#[test]
fn corrupt_cache_entry_is_asked_again() {
    let layout = Layout::builtin("ntu25").unwrap();
    let server = serve(normal(layout.joints.clone()));
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&server.url, dir.path());
    describe(&cfg, &classes(), &layout).unwrap();
    let before = server.requests.load(Ordering::SeqCst);
    let entry = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a cache entry");
    std::fs::write(&entry, b"{\"class\": \"wave\", \"answ").unwrap();
    describe(&cfg, &classes(), &layout).unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 1);
    assert!(entry.with_extension("json.corrupt").exists());
    // the re-asked answer is cached again
    describe(&cfg, &classes(), &layout).unwrap();
    assert_eq!(server.requests.load(Ordering::SeqCst), before + 1);
}

/// `seed` and structured output go out with every request when asked for (and only then), the
/// schema names the layout's joints, and an answer shaped by the schema parses.
#[test]
fn seed_and_structured_output_are_sent_and_their_answers_parse() {
    let layout = Layout::builtin("ntu25").unwrap();
    let joints = layout.joints.clone();
    let bodies = Arc::new(Mutex::new(Vec::<Value>::new()));
    let seen = bodies.clone();
    let handler: Arc<Handler> = Arc::new(move |_, p: &str, v: &Value| {
        seen.lock().unwrap().push(v.clone());
        let action = p.split('"').nth(1).unwrap_or("x").to_string();
        // answer exactly in the schema's shape, no prose around it
        let Some(schema) = v.pointer("/response_format/json_schema/schema") else {
            return Reply::Answer(answer_for(p, &joints));
        };
        if schema.pointer("/properties/key_joints").is_some() {
            Reply::Answer(
                json!({"description": format!("{action} with the arms"), "key_joints": ["left_hand"]})
                    .to_string(),
            )
        } else {
            let names = schema
                .pointer("/properties/joints/required")
                .and_then(Value::as_array)
                .unwrap();
            let map: serde_json::Map<String, Value> = names
                .iter()
                .map(|n| n.as_str().unwrap())
                .map(|n| (n.to_string(), json!(format!("{action}: {n}"))))
                .collect();
            Reply::Answer(json!({ "joints": map }).to_string())
        }
    });
    let server = serve(handler);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&server.url, &dir.path().join("cache"));
    cfg.seed = Some(42);
    cfg.structured = true;
    let (file, _) = describe(&cfg, &classes()[..2], &layout).unwrap();
    validate(&file, &layout, "structured").unwrap();
    assert_eq!(file.classes[0].key_joints, ["left_hand"]);
    assert_eq!(
        file.classes[1].local["right_knee"],
        "kicking something: right_knee"
    );
    let sent = bodies.lock().unwrap().clone();
    assert_eq!(sent.len(), 4);
    for v in &sent {
        assert_eq!(v["seed"], 42);
        assert_eq!(v["response_format"]["type"], "json_schema");
        assert_eq!(v["response_format"]["json_schema"]["strict"], true);
        let schema = &v["response_format"]["json_schema"]["schema"];
        if let Some(e) = schema.pointer("/properties/key_joints/items/enum") {
            assert_eq!(e.as_array().unwrap().len(), 25);
        } else {
            let req = schema.pointer("/properties/joints/required").unwrap();
            assert_eq!(req.as_array().unwrap().len(), 25);
        }
    }

    // without the options the requests carry neither key
    bodies.lock().unwrap().clear();
    let plain = config(&server.url, &dir.path().join("cache2"));
    describe(&plain, &classes()[..1], &layout).unwrap();
    for v in bodies.lock().unwrap().iter() {
        assert!(
            v.get("seed").is_none() && v.get("response_format").is_none(),
            "{v}"
        );
    }
}
