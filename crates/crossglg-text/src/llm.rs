//! An OpenAI-compatible chat-completions client and `describe`, which asks it the global and
//! local question for every class, with retries, a concurrency limit and an on-disk cache that
//! lets an interrupted run resume without paying twice for an answer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crossglg_data::Layout;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::format::{ClassDescription, DescriptionFile, Provenance};
use crate::prompt::{parse_global, parse_local, AnswerError, PromptKind, PromptTemplate};
use crate::util::{sha256_hex, today_utc};
use crossglg_data::atomic::write_atomic;

/// Everything `describe` needs. The API key is never stored here: only the NAME of the
/// environment variable that holds it.
#[derive(Debug, Clone)]
pub struct LlmConfig {
    /// `https://api.openai.com/v1`, `http://localhost:8000` (then `/v1` is added) or a full
    /// `.../chat/completions` URL.
    pub base_url: String,
    pub model: String,
    /// Name of the environment variable with the API key; `None` sends no Authorization header
    /// (local servers).
    pub api_key_env: Option<String>,
    pub temperature: f32,
    pub max_tokens: Option<u32>,
    /// Sent as `seed` (OpenAI and llama.cpp's server sample reproducibly with it).
    pub seed: Option<u64>,
    /// Ask for structured output: `response_format` with a JSON schema of the answer (the
    /// global description with key joints from the layout; one string per layout joint), which
    /// OpenAI's and llama.cpp's servers enforce while sampling. Off for servers that reject it.
    pub structured: bool,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Extra attempts after the first on 5xx, 429, timeouts, broken responses and unreadable
    /// answers.
    pub retries: u32,
    /// First back-off delay; doubles each attempt (capped at 60 s). A `Retry-After` header wins.
    pub backoff: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// One JSON file per class and prompt kind.
    pub cache_dir: PathBuf,
    pub global_prompt: PromptTemplate,
    pub local_prompt: PromptTemplate,
    /// Written into the description file.
    pub dataset: String,
    pub note: String,
    pub progress: bool,
}

impl LlmConfig {
    /// Defaults: OpenAI's endpoint, key in `OPENAI_API_KEY`, temperature 0.2, 120 s timeout,
    /// 5 retries from 2 s, 4 requests at once, built-in prompts.
    pub fn new(model: &str, dataset: &str, cache_dir: &Path) -> Self {
        Self {
            base_url: "https://api.openai.com/v1".into(),
            model: model.into(),
            api_key_env: Some("OPENAI_API_KEY".into()),
            temperature: 0.2,
            max_tokens: None,
            seed: None,
            structured: false,
            timeout: Duration::from_secs(120),
            retries: 5,
            backoff: Duration::from_secs(2),
            concurrency: 4,
            cache_dir: cache_dir.to_path_buf(),
            global_prompt: PromptTemplate::builtin(PromptKind::Global),
            local_prompt: PromptTemplate::builtin(PromptKind::Local),
            dataset: dataset.into(),
            note: String::new(),
            progress: false,
        }
    }

    pub fn endpoint(&self) -> String {
        let b = self.base_url.trim_end_matches('/');
        if b.ends_with("/chat/completions") {
            b.to_string()
        } else if b.ends_with("/v1") {
            format!("{b}/chat/completions")
        } else {
            format!("{b}/v1/chat/completions")
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    #[error("environment variable {0} (named as the API key variable) is not set")]
    MissingKey(String),
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{url}: response is not a chat completion: {message}")]
    Malformed { url: String, message: String },
    #[error("{0}")]
    Answer(#[from] AnswerError),
    #[error("cache file {path}: {message}")]
    Cache { path: PathBuf, message: String },
}

impl LlmError {
    /// Worth another attempt: server trouble, rate limits, timeouts, garbled bodies, unreadable
    /// answers. Not: refusals (asking again rarely helps), auth and other client errors.
    fn retryable(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => *status == 429 || *status >= 500,
            LlmError::Transport { .. } | LlmError::Malformed { .. } => true,
            LlmError::Answer(AnswerError::Refused(_)) => false,
            LlmError::Answer(_) => true,
            LlmError::MissingKey(_) | LlmError::Cache { .. } => false,
        }
    }

    /// Stops the whole run: every other request would fail the same way.
    fn fatal(&self) -> bool {
        match self {
            LlmError::Status { status, .. } => {
                matches!(status, 400 | 401 | 403 | 404)
            }
            LlmError::MissingKey(_) => true,
            _ => false,
        }
    }
}

/// The longest wait a `Retry-After` header can ask for; longer answers are cut to this, so a
/// server saying "come back tomorrow" cannot stall a run for a day.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// A `Retry-After` header in seconds, cut to [`MAX_RETRY_AFTER`].
fn retry_after(v: &str) -> Option<Duration> {
    let s = v.trim().parse::<u64>().ok()?;
    Some(Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// The API key, kept out of Debug output so it never lands in a log.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A blocking chat-completions client.
#[derive(Debug)]
pub struct ChatClient {
    agent: ureq::Agent,
    url: String,
    model: String,
    key: Option<Secret>,
    temperature: f32,
    max_tokens: Option<u32>,
    seed: Option<u64>,
    retries: u32,
    backoff: Duration,
}

impl ChatClient {
    pub fn new(cfg: &LlmConfig) -> Result<Self, LlmError> {
        let key = match &cfg.api_key_env {
            Some(var) => Some(Secret(
                std::env::var(var).map_err(|_| LlmError::MissingKey(var.clone()))?,
            )),
            None => None,
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(cfg.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            agent,
            url: cfg.endpoint(),
            model: cfg.model.clone(),
            key,
            temperature: cfg.temperature,
            max_tokens: cfg.max_tokens,
            seed: cfg.seed,
            retries: cfg.retries,
            backoff: cfg.backoff,
        })
    }

    /// One request, no retries. Returns the assistant's text. `schema` (see
    /// [`answer_schema`]) asks for structured output.
    pub fn complete_once(
        &self,
        prompt: &str,
        schema: Option<&Value>,
    ) -> Result<String, (LlmError, Option<Duration>)> {
        let mut body = json!({
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": self.temperature,
        });
        if let Some(m) = self.max_tokens {
            body["max_tokens"] = json!(m);
        }
        if let Some(seed) = self.seed {
            body["seed"] = json!(seed);
        }
        if let Some(schema) = schema {
            body["response_format"] = schema.clone();
        }
        let mut req = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json");
        if let Some(Secret(k)) = &self.key {
            req = req.header("Authorization", &format!("Bearer {k}"));
        }
        let transport = |e: ureq::Error| {
            (
                LlmError::Transport {
                    url: self.url.clone(),
                    message: self.redact(&e.to_string()),
                },
                None,
            )
        };
        let resp = req.send(body.to_string()).map_err(transport)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        // Everything after this point may be printed, logged or cached: a server that echoes
        // the request (or a proxy's error page) must not carry the key there.
        let text = self.redact(&resp.into_body().read_to_string().map_err(transport)?);
        if !(200..300).contains(&status) {
            let body: String = text.chars().take(500).collect();
            return Err((
                LlmError::Status {
                    url: self.url.clone(),
                    status,
                    body,
                },
                retry_after,
            ));
        }
        let malformed = |message: String| {
            (
                LlmError::Malformed {
                    url: self.url.clone(),
                    message,
                },
                None,
            )
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| malformed(e.to_string()))?;
        let msg = v
            .pointer("/choices/0/message")
            .ok_or_else(|| malformed("no choices[0].message".into()))?;
        if let Some(r) = msg.get("refusal").and_then(Value::as_str) {
            if !r.trim().is_empty() {
                return Err((LlmError::Answer(AnswerError::Refused(r.to_string())), None));
            }
        }
        msg.get("content")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| malformed("choices[0].message.content is not a string".into()))
    }

    /// `text` with every occurrence of the API key replaced.
    fn redact(&self, text: &str) -> String {
        match &self.key {
            Some(Secret(k)) if !k.is_empty() => text.replace(k.as_str(), "[redacted]"),
            _ => text.to_string(),
        }
    }

    /// Backoff delay before attempt `attempt + 1`.
    fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        hint.unwrap_or_else(|| {
            self.backoff
                .saturating_mul(1u32 << attempt.min(16))
                .min(Duration::from_secs(60))
        })
    }

    /// Requests and parses with retries; `parse` turning the text into `T` may also ask for a
    /// retry (an unreadable answer).
    pub fn ask<T>(
        &self,
        prompt: &str,
        schema: Option<&Value>,
        stop: &AtomicBool,
        parse: impl Fn(&str) -> Result<T, AnswerError>,
    ) -> Result<(String, T), LlmError> {
        let mut attempt = 0;
        loop {
            let result = self
                .complete_once(prompt, schema)
                .and_then(|text| match parse(&text) {
                    Ok(v) => Ok((text, v)),
                    Err(e) => Err((LlmError::Answer(e), None)),
                });
            match result {
                Ok(v) => return Ok(v),
                Err((e, hint)) => {
                    if !e.retryable() || attempt >= self.retries || stop.load(Ordering::Relaxed) {
                        return Err(e);
                    }
                    let d = self.delay(attempt, hint);
                    tracing::warn!("{e}; retrying in {d:?}");
                    std::thread::sleep(d);
                    attempt += 1;
                }
            }
        }
    }
}

/// The `response_format` asking for an answer of `kind` as JSON that the parsers read:
/// `{"description", "key_joints"}` (key joints restricted to the layout's names) for the
/// global question, `{"joints": {<every layout joint>: text}}` for the local one. OpenAI's
/// `json_schema` form, which llama.cpp's server also takes.
pub fn answer_schema(kind: PromptKind, layout: &Layout) -> Value {
    let joints: Vec<&str> = layout.joints.iter().map(String::as_str).collect();
    let (name, schema) = match kind {
        PromptKind::Global => (
            "crossglg_global_description",
            json!({
                "type": "object",
                "properties": {
                    "description": {"type": "string"},
                    "key_joints": {"type": "array", "items": {"type": "string", "enum": joints}},
                },
                "required": ["description", "key_joints"],
                "additionalProperties": false,
            }),
        ),
        PromptKind::Local => {
            let props: serde_json::Map<String, Value> = joints
                .iter()
                .map(|j| (j.to_string(), json!({"type": "string"})))
                .collect();
            (
                "crossglg_joint_descriptions",
                json!({
                    "type": "object",
                    "properties": {
                        "joints": {
                            "type": "object",
                            "properties": props,
                            "required": joints,
                            "additionalProperties": false,
                        },
                    },
                    "required": ["joints"],
                    "additionalProperties": false,
                }),
            )
        }
    };
    json!({
        "type": "json_schema",
        "json_schema": {"name": name, "strict": true, "schema": schema},
    })
}

/// What is stored per class and prompt kind. The raw answer is kept so a better parser can
/// reread it later; the key fields are checked when the file is read back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub class: String,
    pub kind: String,
    pub model: String,
    pub template_sha256: String,
    pub layout: String,
    pub date: String,
    pub answer: String,
}

/// The cache file of one class and kind: `<kind>-<slug>-<hash>.json`, the hash over class name,
/// model, template hash and the layout's joint list (the rendered prompt depends on it).
pub fn cache_path(
    dir: &Path,
    kind: PromptKind,
    class: &str,
    model: &str,
    template_sha: &str,
    layout: &Layout,
) -> PathBuf {
    let key = format!(
        "{}\n{class}\n{model}\n{template_sha}\n{}\n{}",
        kind.as_str(),
        layout.name,
        layout.joints.join(",")
    );
    let slug: String = class
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    dir.join(format!(
        "{}-{slug}-{}.json",
        kind.as_str(),
        &sha256_hex(key.as_bytes())[..16]
    ))
}

fn read_cache(path: &Path, expect: &CachedAnswer) -> Result<Option<CachedAnswer>, LlmError> {
    let text = match crossglg_data::bounded::read_to_string(
        path,
        crossglg_data::bounded::SMALL_FILE_BYTES,
    ) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(LlmError::Cache {
                path: path.into(),
                message: e.to_string(),
            })
        }
    };
    let c: CachedAnswer = match serde_json::from_str(&text) {
        Ok(c) => c,
        Err(e) => {
            // A torn or hand-broken entry is a miss, not a reason to fail every later run: it
            // is moved aside (kept for a look) and the class is asked again.
            let aside = path.with_extension("json.corrupt");
            std::fs::rename(path, &aside).map_err(|r| LlmError::Cache {
                path: path.into(),
                message: format!("unreadable ({e}) and cannot be moved aside: {r}"),
            })?;
            tracing::warn!(
                "cache entry {} is unreadable ({e}); moved to {} and asking again",
                path.display(),
                aside.display()
            );
            return Ok(None);
        }
    };
    // A hash collision or a hand-edited file must not hand one class's text to another.
    if c.class != expect.class
        || c.kind != expect.kind
        || c.model != expect.model
        || c.template_sha256 != expect.template_sha256
        || c.layout != expect.layout
    {
        return Ok(None);
    }
    Ok(Some(c))
}

/// One class and kind that could not be answered.
#[derive(Debug)]
pub struct ClassFailure {
    pub id: usize,
    pub class: String,
    pub kind: PromptKind,
    pub error: LlmError,
}

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    #[error(transparent)]
    Client(LlmError),
    #[error("{} of {total} answers failed (finished answers are cached in {cache}; run again to resume):\n{}",
        failures.len(),
        failures.iter().map(|f| format!("  class {} `{}` ({}): {}", f.id, f.class, f.kind.as_str(), f.error)).collect::<Vec<_>>().join("\n"))]
    Classes {
        failures: Vec<ClassFailure>,
        total: usize,
        cache: PathBuf,
    },
}

/// Counts of a `describe` run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DescribeStats {
    pub from_cache: usize,
    pub requested: usize,
}

enum Answer {
    Global(crate::prompt::GlobalAnswer),
    Local(crate::prompt::LocalAnswer),
}

/// Asks the global and local prompt for every class (ids are positions in `classes`), in
/// parallel up to `cfg.concurrency`, reading finished answers from the cache and writing new ones
/// to it as they arrive. Fails with every class that could not be answered once all others are
/// done, or early on errors that would hit every request (bad key, 401/403/404).
pub fn describe(
    cfg: &LlmConfig,
    classes: &[String],
    layout: &Layout,
) -> Result<(DescriptionFile, DescribeStats), DescribeError> {
    let client = ChatClient::new(cfg).map_err(DescribeError::Client)?;
    std::fs::create_dir_all(&cfg.cache_dir).map_err(|e| {
        DescribeError::Client(LlmError::Cache {
            path: cfg.cache_dir.clone(),
            message: e.to_string(),
        })
    })?;
    let templates = [&cfg.global_prompt, &cfg.local_prompt];
    let shas = [cfg.global_prompt.sha256(), cfg.local_prompt.sha256()];
    let jobs: Vec<(usize, usize)> = (0..classes.len()).flat_map(|c| [(c, 0), (c, 1)]).collect();
    let results: Vec<Mutex<Option<Result<Answer, LlmError>>>> =
        jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let from_cache = AtomicUsize::new(0);
    let requested = AtomicUsize::new(0);
    let bar =
        crossglg_data::progress::Progress::new("descriptions", jobs.len() as u64, cfg.progress);

    let run_job = |(c, k): (usize, usize)| -> Result<Answer, LlmError> {
        let kind = templates[k].kind;
        let class = &classes[c];
        let path = cache_path(&cfg.cache_dir, kind, class, &cfg.model, &shas[k], layout);
        let expect = CachedAnswer {
            class: class.clone(),
            kind: kind.as_str().into(),
            model: cfg.model.clone(),
            template_sha256: shas[k].clone(),
            layout: layout.name.clone(),
            date: today_utc(),
            answer: String::new(),
        };
        let parse = |text: &str| -> Result<Answer, AnswerError> {
            Ok(match kind {
                PromptKind::Global => Answer::Global(parse_global(text, layout)?),
                PromptKind::Local => Answer::Local(parse_local(text, layout)?),
            })
        };
        if let Some(hit) = read_cache(&path, &expect)? {
            if let Ok(a) = parse(&hit.answer) {
                from_cache.fetch_add(1, Ordering::Relaxed);
                return Ok(a);
            }
            // Stored by an older, laxer parser: ask again.
        }
        let prompt = templates[k].render(class, layout);
        requested.fetch_add(1, Ordering::Relaxed);
        let schema = cfg.structured.then(|| answer_schema(kind, layout));
        let (raw, answer) = client.ask(&prompt, schema.as_ref(), &stop, parse)?;
        let entry = CachedAnswer {
            answer: raw,
            ..expect
        };
        let text = serde_json::to_string_pretty(&entry).expect("plain data serialises");
        write_atomic(&path, text.as_bytes()).map_err(|e| LlmError::Cache {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(answer)
    };

    let workers = cfg.concurrency.clamp(1, jobs.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs.len() {
                    break;
                }
                let r = run_job(jobs[i]);
                if let Err(e) = &r {
                    if e.fatal() {
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                *results[i].lock().expect("no panics while held") = Some(r);
                bar.inc(1);
            });
        }
    });
    bar.finish();

    let mut failures = Vec::new();
    let mut globals = vec![None; classes.len()];
    let mut locals = vec![None; classes.len()];
    for (slot, &(c, k)) in results.into_iter().zip(&jobs) {
        let kind = templates[k].kind;
        match slot.into_inner().expect("no panics while held") {
            Some(Ok(Answer::Global(g))) => globals[c] = Some(g),
            Some(Ok(Answer::Local(l))) => locals[c] = Some(l),
            Some(Err(error)) => failures.push(ClassFailure {
                id: c,
                class: classes[c].clone(),
                kind,
                error,
            }),
            // Never started because a fatal error stopped the run; reported through that one.
            None => {}
        }
    }
    if let Some(pos) = failures.iter().position(|f| f.error.fatal()) {
        return Err(DescribeError::Client(failures.swap_remove(pos).error));
    }
    if !failures.is_empty() {
        return Err(DescribeError::Classes {
            failures,
            total: jobs.len(),
            cache: cfg.cache_dir.clone(),
        });
    }
    let provenance = Provenance {
        model: cfg.model.clone(),
        global_prompt_sha256: shas[0].clone(),
        local_prompt_sha256: shas[1].clone(),
        date: today_utc(),
        note: cfg.note.clone(),
    };
    let mut file = DescriptionFile::new(&cfg.dataset, &layout.name, provenance);
    for (c, (g, l)) in globals.into_iter().zip(locals).enumerate() {
        let (Some(g), Some(l)) = (g, l) else {
            unreachable!("every job either answered or failed")
        };
        file.classes.push(ClassDescription {
            id: c,
            name: classes[c].clone(),
            global: g.description,
            key_joints: g.key_joints,
            local: l.joints,
        });
    }
    Ok((
        file,
        DescribeStats {
            from_cache: from_cache.into_inner(),
            requested: requested.into_inner(),
        },
    ))
}

/// `describe`, then validate the result and write it to `out` atomically (what
/// `crossglg describe` runs).
pub fn describe_to_file(
    cfg: &LlmConfig,
    classes: &[String],
    layout: &Layout,
    out: &Path,
) -> Result<DescribeStats, crate::TextError> {
    let (file, stats) = describe(cfg, classes, layout)?;
    crate::format::validate(&file, layout, &out.display().to_string())?;
    file.save(out)?;
    Ok(stats)
}

#[cfg(test)]
mod retry_tests {
    #[test]
    fn retry_after_is_capped() {
        use super::{retry_after, MAX_RETRY_AFTER};
        use std::time::Duration;
        assert_eq!(retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(retry_after(" 86400 "), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
