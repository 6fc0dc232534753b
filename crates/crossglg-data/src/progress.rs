//! Progress of long work, on every kind of stderr. On a terminal it is an `indicatif` bar. When
//! stderr is not a terminal (a cluster job, `nohup`, a pipe), `indicatif` draws nothing, so a
//! plain line is written instead: at the start, every `CROSSGLG_PROGRESS_SECS` seconds (30 by
//! default), and at the end. A job log then shows where hours of training stand.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// One unit of long work with a known length (steps, samples, texts, requests).
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Mutex<Plain>>,
}

struct Plain {
    what: String,
    len: u64,
    pos: u64,
    msg: String,
    start: Instant,
    last: Instant,
    every: Duration,
}

impl Plain {
    fn line(&self) -> String {
        let elapsed = self.start.elapsed().as_secs_f64();
        let pct = 100.0 * self.pos as f64 / self.len.max(1) as f64;
        let eta = if self.pos > 0 && self.pos < self.len {
            let left = elapsed / self.pos as f64 * (self.len - self.pos) as f64;
            format!(", about {} left", human(left))
        } else {
            String::new()
        };
        let msg = if self.msg.is_empty() {
            String::new()
        } else {
            format!(", {}", self.msg)
        };
        format!(
            "{}: {}/{} ({pct:.0} %) after {}{eta}{msg}",
            self.what,
            self.pos,
            self.len,
            human(elapsed)
        )
    }
}

fn human(secs: f64) -> String {
    let s = secs.round() as u64;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

/// Seconds between plain progress lines: `CROSSGLG_PROGRESS_SECS`, else 30.
fn interval() -> Duration {
    let secs = std::env::var("CROSSGLG_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .unwrap_or(30.0);
    Duration::from_secs_f64(secs)
}

impl Progress {
    /// Progress of `what` over `len` units; nothing at all unless `enabled`.
    pub fn new(what: &str, len: u64, enabled: bool) -> Self {
        Self::with_terminal(what, len, enabled, std::io::stderr().is_terminal())
    }

    fn with_terminal(what: &str, len: u64, enabled: bool, terminal: bool) -> Self {
        if !enabled {
            return Progress {
                bar: ProgressBar::hidden(),
                plain: None,
            };
        }
        if terminal {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} {prefix} {msg} ({eta})",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            bar.set_prefix(what.to_string());
            return Progress { bar, plain: None };
        }
        let now = Instant::now();
        let plain = Plain {
            what: what.to_string(),
            len,
            pos: 0,
            msg: String::new(),
            start: now,
            last: now,
            every: interval(),
        };
        eprintln!("{}", plain.line());
        Progress {
            bar: ProgressBar::hidden(),
            plain: Some(Mutex::new(plain)),
        }
    }

    pub fn set_message(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match &self.plain {
            Some(p) => p.lock().expect("progress lock").msg = msg,
            None => self.bar.set_message(msg),
        }
    }

    pub fn set_length(&self, len: u64) {
        match &self.plain {
            Some(p) => p.lock().expect("progress lock").len = len,
            None => self.bar.set_length(len),
        }
    }

    pub fn inc(&self, n: u64) {
        match &self.plain {
            Some(p) => {
                let mut p = p.lock().expect("progress lock");
                p.pos += n;
                if p.last.elapsed() >= p.every {
                    p.last = Instant::now();
                    eprintln!("{}", p.line());
                }
            }
            None => self.bar.inc(n),
        }
    }

    /// Ends the display: the bar is cleared; a plain log gets a last line.
    pub fn finish(&self) {
        match &self.plain {
            Some(p) => eprintln!("{} (done)", p.lock().expect("progress lock").line()),
            None => self.bar.finish_and_clear(),
        }
    }

    /// The last plain line (for tests); `None` on a terminal or when disabled.
    pub fn plain_line(&self) -> Option<String> {
        self.plain
            .as_ref()
            .map(|p| p.lock().expect("progress lock").line())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines_say_where_the_work_stands() {
        let p = Progress::with_terminal("training", 200, true, false);
        p.set_message("epoch 2 loss 1.234");
        p.inc(50);
        let line = p.plain_line().unwrap();
        assert!(line.starts_with("training: 50/200 (25 %) after "), "{line}");
        assert!(
            line.contains("left") && line.ends_with("epoch 2 loss 1.234"),
            "{line}"
        );
        assert!(Progress::with_terminal("x", 1, false, false)
            .plain_line()
            .is_none());
        assert!(Progress::with_terminal("x", 1, true, true)
            .plain_line()
            .is_none());
        assert_eq!(human(3725.0), "1 h 2 min");
    }
}
