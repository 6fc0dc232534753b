//! The `crossglg` binary as a user runs it, on the real data under `$CROSSGLG_DATA`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn data_dir() -> PathBuf {
    let p = std::env::var_os("CROSSGLG_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"));
    assert!(
        p.is_dir(),
        "real data not found at {}: set CROSSGLG_DATA to the shared data folder",
        p.display()
    );
    p
}

fn crossglg(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Overrides that make a demo-sized training run take seconds.
const QUICK: [&str; 6] = [
    "--set",
    "epochs=1",
    "--set",
    "data.synthetic.samples_per_class=6",
    "--set",
    "preprocess.frames=16",
];

fn ok(args: &[&str]) -> String {
    let o = crossglg(args);
    assert!(
        o.status.success(),
        "crossglg {args:?} failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `crossglg text names` for `names` on the NTU layout: the file `dir/<stem>.json`.
fn names_file(dir: &Path, stem: &str, names: &[&str]) -> std::path::PathBuf {
    let classes = dir.join(format!("{stem}.txt"));
    std::fs::write(&classes, names.join("\n")).unwrap();
    let out = dir.join(format!("{stem}.json"));
    ok(&[
        "text",
        "names",
        "--classes",
        classes.to_str().unwrap(),
        "--layout",
        "ntu25",
        "--dataset",
        "synthetic",
        "--out",
        out.to_str().unwrap(),
    ]);
    out
}

#[test]
fn split_ntu120_prints_the_official_exemplars() {
    let out = ok(&["data", "split", "ntu120"]);
    let anchors = std::fs::read_to_string(
        data_dir().join("ntu-rgbd-meta/one-shot-lists/one_shot_eval_anchors.txt"),
    )
    .unwrap();
    let names: Vec<&str> = anchors
        .lines()
        .filter_map(|l| l.split('/').next_back()?.split('.').next())
        .filter(|n| n.starts_with('S'))
        .collect();
    assert_eq!(names.len(), 20);
    for n in names {
        assert!(out.contains(n), "exemplar {n} missing from:\n{out}");
    }
    assert!(out.contains("novel classes (20)"), "{out}");
}

/// `convert` then `inspect` of the packed file gives the same statistics as inspecting the
/// raw folder: frames, bodies, joints, value ranges, per-class counts.
/// `crossglg data convert` of a real dataset folder under `$CROSSGLG_DATA` into `out/FORMAT.safetensors`.
fn convert_real(format: &str, dir: &str, out: &Path) -> PathBuf {
    let packed = out.join(format!("{format}.safetensors"));
    let raw = data_dir().join(dir);
    ok(&[
        "data",
        "convert",
        "--format",
        format,
        raw.to_str().unwrap(),
        "--out",
        packed.to_str().unwrap(),
    ]);
    packed
}

#[test]
fn convert_then_inspect_round_trips_nwucla_and_msr() {
    let tmp = tempfile::tempdir().unwrap();
    for (format, dir) in [
        ("msr", "msr-action3d/MSRAction3DSkeletonReal3D"),
        ("nwucla", "nw-ucla/all_sqe"),
    ] {
        let raw = data_dir().join(dir);
        let packed = convert_real(format, dir, tmp.path());
        let strip = |s: String| {
            let mut v: serde_json::Value = serde_json::from_str(&s).unwrap();
            for k in ["source", "format", "skipped", "flagged"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        };
        let a = strip(ok(&["data", "inspect", "--json", raw.to_str().unwrap()]));
        let b = strip(ok(&["data", "inspect", "--json", packed.to_str().unwrap()]));
        assert_eq!(a, b, "{format}: packed file differs from the raw folder");
    }
}

#[test]
fn shipped_descriptions_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crossglg-text/descriptions");
    for f in ["ntu120.json", "nw-ucla.json", "msr-action3d.json"] {
        ok(&["text", "validate", dir.join(f).to_str().unwrap()]);
    }
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crossglg-train/demo/synthetic-descriptions.json");
    ok(&["text", "validate", demo.to_str().unwrap()]);
}

/// `text names` writes a valid description file of the class names alone, whose key joints
/// come from body-part words in the names, and a run trains on it; a repeated class is refused
/// and nothing is written.
#[test]
fn names_only_descriptions_train() {
    let dir = tempfile::tempdir().unwrap();
    let classes = dir.path().join("classes.txt");
    let names = [
        "wave",
        "punch",
        "kick",
        "squat",
        "jump",
        "turn",
        "bow",
        "clap",
        "raise_arms",
        "side_step",
        "nod",
        "shake_head",
        "march",
        "arm_circles",
        "point",
        "side_bend",
        "throw",
    ];
    std::fs::write(&classes, names.join("\n")).unwrap();
    let file = dir.path().join("names.json");
    let (c, f) = (classes.to_str().unwrap(), file.to_str().unwrap());
    let base = [
        "text",
        "names",
        "--classes",
        c,
        "--layout",
        "ntu25",
        "--dataset",
        "synthetic",
    ];
    let out = ok(&[&base[..], &["--out", f]].concat());
    assert!(out.contains("17 classes"), "{out}");
    ok(&["text", "validate", f]);
    let shown = ok(&["text", "show", f, "raise_arms"]);
    assert!(shown.contains("body-part words"), "{shown}");
    assert!(shown.contains("elbow"), "{shown}");
    let run = dir.path().join("run");
    train_demo_quick(&run, &[&format!("text.descriptions={f}")]);
    assert!(run.join("report.json").exists());

    // --text-agreement: with names only, the global and per-joint texts are the same, and so
    // is every ρ; against the demo's descriptions (--descriptions) they differ
    let r = run.to_str().unwrap();
    let agreement = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = ok(&[
            &["eval", r, "--draws", "0", "--json", "--text-agreement"],
            extra,
        ]
        .concat());
        let last = out
            .rfind("{\n  \"text_agreement\"")
            .expect("agreement JSON");
        let v: serde_json::Value = serde_json::from_str(&out[last..]).unwrap();
        v["text_agreement"].as_array().unwrap().clone()
    };
    let own = agreement(&[]);
    assert_eq!(own.len(), 6, "{own:?}");
    assert!(own[..3]
        .iter()
        .zip(&own[3..])
        .all(|(g, j)| g["rho"] == j["rho"]));
    // (one-word names share no words in the hashed encoder, so ρ may be null here)
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/crossglg-train/demo/synthetic-descriptions.json");
    let d = demo.to_str().unwrap();
    let full = agreement(&["--descriptions", d]);
    assert_eq!(full.len(), 6);
    assert!(full[..3]
        .iter()
        .zip(&full[3..])
        .any(|(g, j)| g["rho"] != j["rho"]));
    let in_range = |r: &serde_json::Value| r["rho"].as_f64().is_some_and(|x| x.abs() <= 1.0);
    assert!(full.iter().all(in_range), "{full:?}");
    // class means from two samples a class: the same pairs, every ρ still a correlation
    let few = agreement(&[
        "--descriptions",
        demo.to_str().unwrap(),
        "--agreement-samples",
        "2",
    ]);
    assert_eq!(few.len(), 6);
    assert!(few.iter().zip(&full).all(|(a, b)| a["count"] == b["count"]));
    assert!(few.iter().all(in_range), "{few:?}");
    // a description file without the run's classes is an error naming it
    let partial = names_file(dir.path(), "partial", &["wave", "punch"]);
    let p = partial.to_str().unwrap();
    let o = crossglg(&[
        "eval",
        r,
        "--draws",
        "0",
        "--text-agreement",
        "--descriptions",
        p,
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("partial.json"), "{err}");

    // --calibration-text: the descriptions choose calibration's base classes; the report
    // records the weight, the cosine method is untouched, and out-of-range weights or a file
    // without the run's classes are errors
    let calibrated = |extra: &[&str]| -> Vec<serde_json::Value> {
        let out = ok(&[&["eval", r, "--draws", "2", "--json"], extra].concat());
        serde_json::from_str(&out).unwrap()
    };
    let paper = calibrated(&[]);
    let text = calibrated(&["--calibration-text", "1", "--descriptions", d]);
    let method = |reps: &[serde_json::Value], m: &str| {
        reps.iter().find(|x| x["method"] == m).cloned().unwrap()
    };
    let (p_cal, t_cal) = (
        method(&paper, "calibrated-logreg"),
        method(&text, "calibrated-logreg"),
    );
    assert!(p_cal["settings"].get("text_weight").is_none(), "{p_cal}");
    assert_eq!(t_cal["settings"]["text_weight"], 1.0, "{t_cal}");
    assert!(t_cal["draws"]["accuracies"].as_array().unwrap().len() == 2);
    assert_eq!(
        method(&paper, "cosine-nn")["accuracy"],
        method(&text, "cosine-nn")["accuracy"]
    );
    for (extra, says) in [
        (&["--calibration-text", "1.5"][..], "text_weight"),
        (
            &["--calibration-text", "1", "--descriptions", p][..],
            "partial.json",
        ),
    ] {
        let o = crossglg(&[&["eval", r, "--draws", "0"], extra].concat());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(says), "{err}");
    }

    // --open-set --zero-shot: the gallery's table and the zero-shot one, with thresholds
    // calibrated on the training classes' descriptions
    let out = ok(&["eval", r, "--draws", "0", "--open-set", "--zero-shot"]);
    let zs = out
        .split("# Open set, zero-shot")
        .nth(1)
        .unwrap_or_else(|| panic!("no zero-shot open-set table: {out}"));
    assert!(zs.contains("training classes' descriptions"), "{zs}");
    assert_eq!(
        zs.lines().filter(|l| l.starts_with("| 0.")).count(),
        5,
        "{zs}"
    );
    let out = ok(&[
        "eval",
        r,
        "--draws",
        "0",
        "--open-set",
        "--zero-shot",
        "--json",
    ]);
    let last = out.rfind("{\n  \"calibration\"").expect("open-set JSON");
    let v: serde_json::Value = serde_json::from_str(&out[last..]).unwrap();
    let rows = v["open_set_zero_shot"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{v}");
    assert!(rows
        .iter()
        .all(|x| (0.0..=1.0).contains(&x["unknown_rejected"].as_f64().unwrap())));

    std::fs::write(&classes, "wave\nkick\nwave\n").unwrap();
    let again = dir.path().join("again.json");
    let o = crossglg(&[&base[..], &["--out", again.to_str().unwrap()]].concat());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("`wave`"), "{err}");
    assert!(!again.exists());
}

/// `crossglg text compare`: two description sets of the same classes, by name or by id.
#[test]
fn text_compare_description_sets() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/crossglg-train/demo/synthetic-descriptions.json");
    let d = demo.to_str().unwrap();
    let compare = |a: &str, b: &str, extra: &[&str]| -> serde_json::Value {
        let out = ok(&[
            &["text", "compare", a, b, "--model", "hashed", "--json"],
            extra,
        ]
        .concat());
        serde_json::from_str(&out).unwrap()
    };
    let rows = |v: &serde_json::Value| v["rows"].as_array().unwrap().clone();
    let num = |r: &serde_json::Value, k: &str| r[k].as_f64().unwrap();

    // a set against itself: same ranking, every class finds itself
    let same = compare(d, d, &[]);
    assert_eq!(same["common"].as_array().unwrap().len(), 17);
    assert_eq!(rows(&same).len(), 2);
    for r in rows(&same) {
        assert!((num(&r, "rho") - 1.0).abs() < 1e-9, "{r}");
        assert!((num(&r, "matched") - 1.0).abs() < 1e-12, "{r}");
        assert!((num(&r, "same_class") - 1.0).abs() < 1e-5, "{r}");
    }

    // the texts moved one class on (every class gets the next one's): nothing finds itself
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&demo).unwrap()).unwrap();
    let classes = file["classes"].as_array_mut().unwrap();
    let texts: Vec<(serde_json::Value, serde_json::Value)> = classes
        .iter()
        .map(|c| (c["global"].clone(), c["local"].clone()))
        .collect();
    for (i, c) in classes.iter_mut().enumerate() {
        let (g, l) = &texts[(i + 1) % texts.len()];
        c["global"] = g.clone();
        c["local"] = l.clone();
    }
    let moved = dir.path().join("moved.json");
    std::fs::write(&moved, serde_json::to_string(&file).unwrap()).unwrap();
    let m = moved.to_str().unwrap();
    let shifted = compare(d, m, &[]);
    for r in rows(&shifted) {
        assert!(num(&r, "matched") < 0.2, "{r}");
        assert!(num(&r, "rho").abs() <= 1.0, "{r}");
    }
    // the human-readable table names both files and both levels
    let table = ok(&["text", "compare", d, m, "--model", "hashed"]);
    assert!(
        table.contains("moved.json") && table.contains("per-joint"),
        "{table}"
    );
    assert_eq!(table.matches("nearest: ").count(), 5, "{table}");
    let every = ok(&["text", "compare", d, d, "--model", "hashed", "--classes"]);
    assert_eq!(every.matches("nearest: itself").count(), 17, "{every}");
    assert_eq!(shifted["classes"].as_array().unwrap().len(), 17);

    // names only, with ids in another order: by name the classes pair up, by id they do not
    let mut names: Vec<&str> = (0..texts.len())
        .map(|i| file["classes"][i]["name"].as_str().unwrap())
        .collect();
    names.reverse();
    let reversed = names_file(dir.path(), "reversed", &names);
    let n = reversed.to_str().unwrap();
    let by_name = compare(d, n, &[]);
    let by_id = compare(d, n, &["--by-id"]);
    assert_eq!(by_name["common"], by_id["common"]);
    let (a, b) = (
        num(&rows(&by_name)[0], "same_class"),
        num(&rows(&by_id)[0], "same_class"),
    );
    assert!(a > b, "same-class cosine by name {a} should beat by id {b}");

    // two shared classes are too few; a missing file is named
    let partial = names_file(dir.path(), "partial", &["wave", "punch"]);
    let p = partial.to_str().unwrap();
    let o = crossglg(&["text", "compare", d, p, "--model", "hashed"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("share 2 class names"),
        "{err}"
    );
    let gone = dir.path().join("gone.json");
    let o = crossglg(&[
        "text",
        "compare",
        d,
        gone.to_str().unwrap(),
        "--model",
        "hashed",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("gone.json"), "{err}");
}

/// `crossglg … | head` closes stdout early: the command must end as other tools do (SIGPIPE),
/// not panic with a backtrace (println! on a closed pipe).
#[cfg(unix)]
#[test]
fn closed_stdout_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    // the read end is gone before the command starts, so its first line hits a closed pipe
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(["data", "layouts"])
        .stdout(writer)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    const SIGPIPE: i32 = 13; // Linux and the BSDs
    assert_eq!(
        out.status.signal(),
        Some(SIGPIPE),
        "{:?}: {stderr}",
        out.status
    );
}

#[test]
fn bad_inputs_fail_with_the_file_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope.skeleton");
    let o = crossglg(&["data", "inspect", missing.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.skeleton"));

    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "epochs = \"many\"\n").unwrap();
    let o = crossglg(&["train", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let o = crossglg(&["bench", "--summary", tmp.path().to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no rust-1.json"), "{err}");
}

/// The whole user flow on a model trained by `crossglg demo` (one short epoch: this checks the
/// commands work together, not accuracy, which `crossglg-train`'s tests measure): write sample
/// files with `data synth`, `embed` them, `enroll` one per class, `recognize` the rest (also at
/// another calibrated operating point), `stream` frames of one file on stdin, and draw every
/// picture.
/// One model trained by `crossglg demo` (one short epoch) and nine sample files written by
/// `data synth`, shared by the tests of this binary (trained once).
struct Demo {
    _dir: tempfile::TempDir,
    run: String,
    manifest: String,
    files: PathBuf,
}

impl Demo {
    fn by_class(&self, class: &str) -> Vec<String> {
        self.manifest
            .lines()
            .skip(1)
            .filter(|l| l.split(',').nth(1) == Some(class))
            .map(|l| {
                let f = self.files.join(l.split(',').next().unwrap());
                f.to_str().unwrap().to_string()
            })
            .collect()
    }
}

fn demo() -> &'static Demo {
    static DEMO: std::sync::OnceLock<Demo> = std::sync::OnceLock::new();
    DEMO.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run").to_str().unwrap().to_string();
        let out = ok(
            &["demo", "--out", &run, "--quiet", "--text-encoder", "hashed"]
                .iter()
                .chain(&QUICK)
                .copied()
                .collect::<Vec<_>>(),
        );
        // it ends with what to try next, with this run's paths
        assert!(
            out.contains(&format!("crossglg recognize --model {run} --describe")),
            "{out}"
        );
        let files = dir.path().join("files");
        let out = ok(&[
            "data",
            "synth",
            "--out",
            files.to_str().unwrap(),
            "--classes",
            "wave,kick,squat",
            "--samples-per-class",
            "3",
        ]);
        assert!(out.contains("9 samples of 3 motions"), "{out}");
        let manifest = std::fs::read_to_string(files.join("manifest.csv")).unwrap();
        Demo {
            _dir: dir,
            run,
            manifest,
            files,
        }
    })
}

#[test]
fn demo_model_serves_synth_files_through_every_command() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let d = demo();
    let run = d.run.clone();
    let by_class = |class: &str| d.by_class(class);
    // The manifest lists each file with its class.
    let manifest = &d.manifest;
    let all: Vec<String> = ["wave", "kick", "squat"]
        .iter()
        .flat_map(|c| by_class(c))
        .collect();
    assert_eq!(all.len(), 9, "{manifest}");
    assert!(all.iter().all(|f| Path::new(f).is_file()), "{all:?}");

    // embed: npy rows in input order, and JSON with names.
    let mut args = vec!["embed", "--model", &run, "--out"];
    let npy = p("emb.npy");
    args.push(&npy);
    args.extend(all.iter().map(String::as_str));
    ok(&args);
    let header = std::fs::read(&npy).unwrap();
    assert!(header.starts_with(b"\x93NUMPY"));
    assert!(String::from_utf8_lossy(&header[..128]).contains("(9, "));

    // enroll the first sample of each class, recognise the others.
    let gallery = p("gallery.safetensors");
    for name in ["wave", "kick", "squat"] {
        ok(&[
            "enroll",
            "--model",
            &run,
            "--gallery",
            &gallery,
            "--name",
            name,
            &by_class(name)[0],
        ]);
    }
    let queries: Vec<String> = ["wave", "kick", "squat"]
        .iter()
        .flat_map(|c| by_class(c)[1..].to_vec())
        .collect();
    let recognize = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "recognize",
            "--model",
            &run,
            "--gallery",
            &gallery,
            "--json",
        ];
        args.extend(extra);
        args.extend(queries.iter().map(String::as_str));
        let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        v.as_array().unwrap().clone()
    };
    let rows = recognize(&[]);
    assert_eq!(rows.len(), 6);
    for r in &rows {
        let c = r["recognition"]["class"].as_str().unwrap();
        assert!(["wave", "kick", "squat"].contains(&c), "{r}");
        assert!(r["recognition"]["similarity"].as_f64().unwrap().abs() <= 1.0 + 1e-5);
    }
    // Operating points: a looser false-accept rate never accepts fewer queries.
    let accepted = |far: &str| {
        recognize(&["--far", far])
            .iter()
            .filter(|r| !r["recognition"]["unknown"].as_bool().unwrap())
            .count()
    };
    assert!(accepted("0.3") >= accepted("0.01"));
    let o = crossglg(&[
        "recognize",
        "--model",
        &run,
        "--gallery",
        &gallery,
        "--far",
        "0.5",
        &queries[0],
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("unknown_threshold.json") && e.contains("0.5"),
        "{e}"
    );

    // stream: the frames of one file as JSON lines on stdin, one event per full window.
    let lines = json_lines_of(&by_class("kick")[1]);
    let sk = crossglg_data::read::npy::read_npy(Path::new(&by_class("kick")[1])).unwrap();
    // a bad line after the third frame is reported and passed over; the stream goes on
    let mut input = String::new();
    for (t, l) in lines.lines().enumerate() {
        input += l;
        input.push('\n');
        if t == 2 {
            input += "{\"joints\": oops\n";
        }
    }
    let o = with_stdin(
        &[
            "stream",
            "--model",
            &run,
            "--gallery",
            &gallery,
            "--window",
            "32",
            "--hop",
            "8",
        ],
        &input,
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let events: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        events.len(),
        (sk.frames - 32) / 8 + 1,
        "{} frames",
        sk.frames
    );
    assert!(events
        .iter()
        .all(|e| e["latency_ms"].as_f64().unwrap() > 0.0));
    assert!(err.contains("latency per window"), "{err}");
    assert!(
        err.contains("skipped input line 4") && err.contains("1 bad lines skipped"),
        "{err}"
    );

    // the stream latency benchmark on this model.
    let out = ok(&[
        "bench",
        "--stream",
        &run,
        "--window",
        "16",
        "--hop",
        "4",
        "--windows",
        "3",
    ]);
    assert!(
        out.contains("| stream (batch 1) |") && out.contains("| embed, batch 16"),
        "{out}"
    );
    let o = crossglg(&["bench", "--stream", &run, "--windows", "0"]);
    assert!(!o.status.success());

    // pictures, SVG and PNG.
    let file = &by_class("wave")[1];
    let pics: [(&str, Vec<&str>); 4] = [
        ("curves", vec![&run]),
        ("confusion", vec![&run]),
        ("importance", vec!["--model", &run, file]),
        ("embeddings", vec![&run]),
    ];
    for (kind, args) in pics {
        for ext in ["svg", "png"] {
            let out = p(&format!("{kind}.{ext}"));
            let mut a = vec!["plot", kind, "--out", &out];
            a.extend(args.iter().copied());
            ok(&a);
            let bytes = std::fs::read(&out).unwrap();
            if ext == "svg" {
                let s = String::from_utf8(bytes).unwrap();
                assert!(
                    s.contains("<svg") && s.trim_end().ends_with("</svg>"),
                    "{out}"
                );
            } else {
                assert!(
                    bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 1000,
                    "{out}"
                );
            }
        }
    }
}

/// Twenty `crossglg enroll` processes into one gallery at once: every class is there
/// afterwards (each holds the gallery's lock from read to write).
/// `crossglg train` of configs/demo.toml into `out` with the quick settings and `--set` each of
/// `sets`.
fn train_demo_quick(out: &Path, sets: &[&str]) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo.toml");
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--quiet",
    ];
    for s in sets {
        args.extend(["--set", s]);
    }
    args.extend(QUICK);
    ok(&args);
}

/// The frames of a `.npy` sequence as `crossglg stream`'s JSON lines.
fn json_lines_of(npy: &str) -> String {
    let sk = crossglg_data::read::npy::read_npy(Path::new(npy)).unwrap();
    let mut input = String::new();
    for t in 0..sk.frames {
        let joints: Vec<[f32; 3]> = (0..sk.joints)
            .map(|v| {
                let i = (t * sk.joints + v) * 3;
                [sk.data[i], sk.data[i + 1], sk.data[i + 2]]
            })
            .collect();
        input += &serde_json::json!({ "joints": joints }).to_string();
        input.push('\n');
    }
    input
}

/// `crossglg ARGS` with `input` on stdin.
fn with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// `recognize --describe`: zero-shot from a description file (all its classes, or `--classes`),
/// and with a gallery the description prior, which at weight 0 decides as the gallery alone.
#[test]
fn recognize_from_descriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let d = demo();
    let run = d.run.as_str();
    let desc = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/crossglg-train/demo/synthetic-descriptions.json");
    let desc = desc.to_str().unwrap();
    let gallery = tmp.path().join("g.safetensors");
    let g = gallery.to_str().unwrap();
    for name in ["wave", "kick", "squat"] {
        ok(&[
            "enroll",
            "--model",
            run,
            "--gallery",
            g,
            "--name",
            name,
            &d.by_class(name)[0],
        ]);
    }
    let queries: Vec<String> = ["wave", "kick", "squat"]
        .iter()
        .flat_map(|c| d.by_class(c)[1..].to_vec())
        .collect();
    let rows = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec!["recognize", "--model", run, "--json"];
        args.extend(extra);
        args.extend(queries.iter().map(String::as_str));
        let v: serde_json::Value = serde_json::from_str(&ok(&args)).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["recognition"].clone())
            .collect()
    };
    // zero-shot among three named classes, and among the file's 17
    let named = rows(&["--describe", desc, "--classes", "wave,kick,squat"]);
    assert_eq!(named.len(), 6);
    for r in &named {
        assert!(
            ["wave", "kick", "squat"].contains(&r["class"].as_str().unwrap()),
            "{r}"
        );
        assert!(r["similarity"].is_null() && r["unknown"] == false, "{r}");
        assert!(
            r["text_similarity"].as_f64().unwrap().abs() <= 1.0 + 1e-5,
            "{r}"
        );
        assert!(r["margin"].as_f64().unwrap() >= 0.0, "{r}");
    }
    let file = desc_classes(desc);
    assert_eq!(file.len(), 17);
    for r in rows(&["--describe", desc]) {
        assert!(
            file.contains(&r["class"].as_str().unwrap().to_string()),
            "{r}"
        );
    }
    // with the gallery: weight 0 decides as the gallery alone, the default weight reports both
    // similarities
    let plain = rows(&["--gallery", g]);
    let zero = rows(&["--gallery", g, "--describe", desc, "--text-prior", "0"]);
    for (p, z) in plain.iter().zip(&zero) {
        assert_eq!(p["class"], z["class"]);
        assert_eq!(p["similarity"], z["similarity"]);
        assert_eq!(p["unknown"], z["unknown"]);
    }
    for r in rows(&["--gallery", g, "--describe", desc]) {
        assert!(
            r["similarity"].is_number() && r["text_similarity"].is_number(),
            "{r}"
        );
    }
    // errors: a gallery class the file does not describe, a class name the file lacks, the
    // prior without descriptions, a model without the text-target branch
    let other = tmp.path().join("other.safetensors");
    let o = other.to_str().unwrap();
    ok(&[
        "enroll",
        "--model",
        run,
        "--gallery",
        o,
        "--name",
        "mystery",
        &queries[0],
    ]);
    ok(&[
        "enroll",
        "--model",
        run,
        "--gallery",
        o,
        "--name",
        "wave",
        &queries[1],
    ]);
    let plain_run = tmp.path().join("plain");
    train_demo_quick(&plain_run, &["model.guidance=none", "text.encoder=hashed"]);
    let pr = plain_run.to_str().unwrap();
    for (args, says) in [
        (vec!["--gallery", o, "--describe", desc], "mystery"),
        (
            vec!["--describe", desc, "--classes", "wave,moonwalk"],
            "moonwalk",
        ),
        (vec!["--gallery", g, "--text-prior", "0.2"], "--describe"),
        (
            vec!["--gallery", g, "--describe", desc, "--text-prior", "2"],
            "between 0 and 1",
        ),
    ] {
        let mut a = vec!["recognize", "--model", run];
        a.extend(&args);
        a.push(&queries[0]);
        let out = crossglg(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(says),
            "{args:?}: {err}"
        );
    }
    let out = crossglg(&["recognize", "--model", pr, "--describe", desc, &queries[0]]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("text-target"),
        "{err}"
    );

    // `serve --describe`: the same answers over HTTP
    let served = serve_with(run, &gallery, &["--describe", desc]);
    let (_, v) = http("GET", &format!("{}/api/model", served.base), None);
    assert_eq!(
        v["described_classes"].as_array().map(Vec::len),
        Some(17),
        "{v}"
    );
    let name = Path::new(&queries[0])
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    let (st, v) = http(
        "POST",
        &format!("{}/api/recognize?filename={name}", served.base),
        Some(std::fs::read(&queries[0]).unwrap()),
    );
    assert_eq!(st, 200, "{v}");
    let d = &v["results"][0]["described"];
    let with_prior = rows(&["--gallery", g, "--describe", desc]);
    assert_eq!(d["prior"]["class"], with_prior[0]["class"], "{v}");
    assert!(
        file.contains(&d["zero_shot"]["class"].as_str().unwrap().to_string()),
        "{v}"
    );
    let close = |a: &serde_json::Value, b: &serde_json::Value| {
        (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5
    };
    assert!(
        close(
            &d["prior"]["text_similarity"],
            &with_prior[0]["text_similarity"]
        ),
        "{v}"
    );
    drop(served);

    // `stream --describe`: every window's event carries both answers
    let stream = |extra: &[&str]| -> Vec<serde_json::Value> {
        let mut args = vec![
            "stream",
            "--model",
            run,
            "--describe",
            desc,
            "--window",
            "16",
            "--hop",
            "8",
        ];
        args.extend(extra);
        let o = with_stdin(&args, &json_lines_of(&queries[0]));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let events = stream(&["--gallery", g]);
    assert!(!events.is_empty());
    for e in &events {
        let z = e["described"]["zero_shot"]["class"].as_str().unwrap();
        assert!(file.contains(&z.to_string()), "{e}");
        let p = e["described"]["prior"]["class"].as_str().unwrap();
        assert!(["wave", "kick", "squat"].contains(&p), "{e}");
    }
    // without a gallery: the descriptions answer alone, as they do beside it
    let alone = stream(&[]);
    assert_eq!(alone.len(), events.len());
    for (a, e) in alone.iter().zip(&events) {
        assert!(
            a["recognition"].is_null() && a["described"]["prior"].is_null(),
            "{a}"
        );
        assert_eq!(a["described"]["zero_shot"], e["described"]["zero_shot"]);
    }
    for e in stream(&["--classes", "wave,kick,squat"]) {
        let z = e["described"]["zero_shot"]["class"].as_str().unwrap();
        assert!(["wave", "kick", "squat"].contains(&z), "{e}");
    }
    let o = crossglg(&["stream", "--model", run]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("--gallery"), "{err}");

    let o = crossglg(&["serve", "--model", pr, "--gallery", g, "--describe", desc]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("text-target"), "{err}");
}

/// The class names of a description file.
fn desc_classes(path: &str) -> Vec<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    v["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn concurrent_enrolls_keep_every_class() {
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    let gallery = tmp.path().join("c.gallery");
    let file = d.by_class("wave")[0].clone();
    let children: Vec<_> = (0..20)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_crossglg"))
                .args(["enroll", "--model", &d.run, "--gallery"])
                .arg(&gallery)
                .args(["--name", &format!("class{i}"), &file])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let g = crossglg_infer::gallery::Gallery::load(&gallery).unwrap();
    assert_eq!(g.classes.len(), 20, "{:?}", g.classes);
    assert_eq!(g.len(), 20);
    assert!(g.model_hash.as_ref().is_some_and(|h| h.len() == 64));
    assert!(g.layout_toml.as_ref().is_some_and(|t| t.contains("ntu25")));
}

/// A gallery enrolled by other weights is refused by `recognize` with a message naming it.
#[test]
fn gallery_of_another_model_is_refused() {
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    let gallery = tmp.path().join("g.gallery");
    let gs = gallery.to_str().unwrap();
    let file = d.by_class("kick")[0].clone();
    ok(&[
        "enroll",
        "--model",
        &d.run,
        "--gallery",
        gs,
        "--name",
        "kick",
        &file,
    ]);
    ok(&["recognize", "--model", &d.run, "--gallery", gs, &file]);
    let mut g = crossglg_infer::gallery::Gallery::load(&gallery).unwrap();
    g.model_hash = Some("0".repeat(64));
    g.save(&gallery).unwrap();
    let o = crossglg(&["recognize", "--model", &d.run, "--gallery", gs, &file]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{e}");
    assert!(
        e.contains("g.gallery") && e.contains("not by this one"),
        "{e}"
    );
}

/// `crossglg serve` as a child process; killed (SIGKILL) when dropped.
struct Served {
    child: std::process::Child,
    base: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(run: &str, gallery: &Path) -> Served {
    serve_with(run, gallery, &[])
}

fn serve_with(run: &str, gallery: &Path, extra: &[&str]) -> Served {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(["serve", "--model", run, "--gallery"])
        .arg(gallery)
        .args(["--addr", "127.0.0.1:0", "--window", "16", "--hop", "4"])
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in `{line}`"))
        .to_string();
    Served { child, base }
}

fn http(method: &str, url: &str, body: Option<Vec<u8>>) -> (u16, serde_json::Value) {
    let a: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let r = match (method, body) {
        ("GET", _) => a.get(url).call(),
        (_, Some(b)) => a
            .post(url)
            .header("Content-Type", "application/octet-stream")
            .send(&b[..]),
        _ => unreachable!(),
    }
    .unwrap();
    let st = r.status().as_u16();
    let v = serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap();
    (st, v)
}

/// Enroll a file over HTTP, kill the server with SIGKILL, start it again: the class is there
/// and recognises the file.
#[test]
fn served_gallery_survives_a_kill_and_restart() {
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    let gallery = tmp.path().join("served.gallery");
    let file = d.by_class("squat")[0].clone();
    let name = Path::new(&file).file_name().unwrap().to_str().unwrap();
    let bytes = std::fs::read(&file).unwrap();
    let s = serve(&d.run, &gallery);
    let (st, v) = http(
        "POST",
        &format!("{}/api/classes/squat?filename={name}", s.base),
        Some(bytes.clone()),
    );
    assert_eq!(st, 201, "{v}");
    drop(s);
    let s = serve(&d.run, &gallery);
    let (_, v) = http("GET", &format!("{}/api/classes", s.base), None);
    assert_eq!(v["classes"][0]["name"], "squat", "{v}");
    let (st, v) = http(
        "POST",
        &format!("{}/api/recognize?filename={name}", s.base),
        Some(bytes),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["results"][0]["recognition"]["class"], "squat");
    assert!(
        v["results"][0]["recognition"]["similarity"]
            .as_f64()
            .unwrap()
            > 0.999
    );
}

/// The chromium binary for the browser test: `CROSSGLG_CHROMIUM`, else Debian's.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CROSSGLG_CHROMIUM") {
        return Some(p.into());
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Headless Chromium on `url`, driven over the DevTools protocol; killed when dropped.
struct Browser {
    child: std::process::Child,
    cdp: tungstenite::WebSocket<tungstenite::stream::MaybeTlsStream<std::net::TcpStream>>,
    id: u64,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    fn open(binary: &Path, url: &str) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--hide-scrollbars",
                "--window-size=1280,860",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        // "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/ID"
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(rest) = line.split("ws://127.0.0.1:").nth(1) {
                    let port: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    let _ = tx.send(port);
                }
            }
        });
        let port = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("Chromium did not open its DevTools port");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let page_ws = loop {
            let (_, list) = http("GET", &format!("http://127.0.0.1:{port}/json/list"), None);
            let page = list.as_array().and_then(|l| {
                l.iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            });
            if let Some(p) = page {
                break p;
            }
            assert!(std::time::Instant::now() < deadline, "no page target");
            std::thread::sleep(std::time::Duration::from_millis(200));
        };
        let (cdp, _) = tungstenite::connect(page_ws).unwrap();
        Browser {
            child,
            cdp,
            id: 0,
            _profile: profile,
        }
    }

    /// A DevTools command's result.
    fn call(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        self.id += 1;
        let req = serde_json::json!({ "id": self.id, "method": method, "params": params });
        self.cdp
            .send(tungstenite::Message::text(req.to_string()))
            .unwrap();
        loop {
            let m: serde_json::Value =
                serde_json::from_str(self.cdp.read().unwrap().to_text().unwrap()).unwrap();
            if m["id"] == self.id {
                return m["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    fn eval(&mut self, expr: &str) -> serde_json::Value {
        let r = self.call(
            "Runtime.evaluate",
            serde_json::json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
        );
        r["result"]["value"].clone()
    }

    /// The page's `#status` text once `done` accepts it (polled up to `secs`).
    fn wait_status(&mut self, secs: u64, done: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let v = self.eval(
                "document.getElementById('status') ? document.getElementById('status').textContent : ''",
            );
            let text = v.as_str().unwrap_or_default().to_string();
            if done(&text) {
                return text;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the page did not get there; status: `{text}`"
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

fn browser_or_skip() -> Option<PathBuf> {
    let b = chromium();
    if b.is_none() {
        assert!(
            std::env::var_os("CROSSGLG_SKIP_BROWSER").is_some(),
            "no Chromium found: install Debian's `chromium` or set CROSSGLG_CHROMIUM \
             (or CROSSGLG_SKIP_BROWSER=1 to leave the browser tests out)"
        );
        eprintln!("CROSSGLG_SKIP_BROWSER set and no Chromium: browser test left out");
    }
    b
}

/// The web page in headless Chromium: its self-test (`?selftest=1`) generates a motion, plays
/// it, enrolls it, recognises it as the new class, streams it over the WebSocket, renames and
/// deletes the class, with the page's own functions. Needs Chromium (`scripts/test.sh`
/// installs Debian's); `CROSSGLG_SKIP_BROWSER=1` leaves it out on a machine without one.
#[test]
fn web_page_selftest_passes_in_headless_chromium() {
    let Some(binary) = browser_or_skip() else {
        return;
    };
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    // served with descriptions, so the page shows what they say too
    let desc = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../crates/crossglg-train/demo/synthetic-descriptions.json");
    let s = serve_with(
        &d.run,
        &tmp.path().join("page.gallery"),
        &["--describe", desc.to_str().unwrap()],
    );
    let mut b = Browser::open(&binary, &format!("{}/?selftest=1", s.base));
    let status = b.wait_status(120, |t| t.starts_with("SELFTEST"));
    assert!(status.starts_with("SELFTEST PASS"), "{status}");
    assert!(status.contains("importance shown"), "{status}");
    assert!(status.contains("descriptions shown"), "{status}");
}

/// The load test against a served model: a few clients for two seconds, no errors, no lost
/// enrolls, and the table printed.
#[test]
fn load_bench_against_a_served_model() {
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(&d.run, &tmp.path().join("load.gallery"));
    let out = ok(&[
        "bench",
        "--load",
        &s.base,
        "--clients",
        "3",
        "--seconds",
        "2",
        "--enroll-every",
        "3",
        "--frames",
        "16",
    ]);
    assert!(out.contains("0 lost enrolls"), "{out}");
    assert!(
        out.contains("| recognize |") && out.contains("| enroll |"),
        "{out}"
    );
    let (_, v) = http("GET", &format!("{}/api/classes", s.base), None);
    assert!(v["classes"].as_array().unwrap().len() > 1, "{v}");
}

/// The picture of the page in the docs: a served model, three classes enrolled from synthetic
/// files, a fourth file dropped on the page. Writes `docs/img/serve-page.png`:
/// `CROSSGLG_SCREENSHOT_RUN=RUN cargo test -p crossglg-cli --test cli screenshot -- --ignored`
/// (RUN: a `crossglg demo` run; the shared one-epoch model otherwise).
#[test]
#[ignore]
fn screenshot_for_docs() {
    use base64::Engine;
    let binary = chromium().expect("Chromium");
    let d = demo();
    let run = std::env::var("CROSSGLG_SCREENSHOT_RUN").unwrap_or(d.run.clone());
    let tmp = tempfile::tempdir().unwrap();
    let s = serve(&run, &tmp.path().join("shot.gallery"));
    for class in ["wave", "kick", "squat"] {
        let f = d.by_class(class)[0].clone();
        let name = Path::new(&f)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        let (st, v) = http(
            "POST",
            &format!("{}/api/classes/{class}?filename={name}", s.base),
            Some(std::fs::read(&f).unwrap()),
        );
        assert_eq!(st, 201, "{v}");
    }
    let f = d.by_class("kick")[1].clone();
    let name = Path::new(&f)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&f).unwrap());
    let mut b = Browser::open(&binary, &format!("{}/", s.base));
    b.wait_status(60, |t| t.starts_with("ready"));
    b.eval(&format!(
        "(async () => {{ const bytes = Uint8Array.from(atob('{b64}'), c => c.charCodeAt(0)); \
         await setSequence({{ name: '{name}', frames: 0, joints: 0, data: null, \
         file: new File([bytes], '{name}') }}); $('play').click(); state.frame = 30; \
         return 1; }})()"
    ));
    b.wait_status(60, |t| t.contains("similarity"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let shot = b.call(
        "Page.captureScreenshot",
        serde_json::json!({ "format": "png" }),
    );
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/img/serve-page.png");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    std::fs::write(&out, png).unwrap();
    eprintln!("wrote {}", out.display());
}

/// `text describe` against a server that echoes the request headers back as a 400 body, with
/// `RUST_LOG=trace`: the key appears nowhere in the output, at any log level.
#[test]
fn llm_key_never_reaches_output_even_at_trace_level() {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut r = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                head += &line;
            }
            let mut s = stream;
            let _ = write!(
                s,
                "HTTP/1.1 400 Bad\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{head}",
                head.len()
            );
        }
    });
    let tmp = tempfile::tempdir().unwrap();
    let classes = tmp.path().join("classes.txt");
    std::fs::write(&classes, "wave\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(["text", "describe", "--classes"])
        .arg(&classes)
        .args(["--layout", "ntu25", "--dataset", "t", "--out"])
        .arg(tmp.path().join("d.json"))
        .args([
            "--base-url",
            &url,
            "--model",
            "m",
            "--api-key-env",
            "CROSSGLG_TEST_KEY",
        ])
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .env("CROSSGLG_TEST_KEY", "sekrit-4242-key")
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!o.status.success());
    // the echoed request reached the error message, the key did not
    assert!(
        all.contains("HTTP 400") && all.contains("[redacted]"),
        "{all}"
    );
    // not even in pieces: a hex dump splits text over 16-byte lines
    let key = "sekrit-4242-key";
    for i in 0..=key.len() - 6 {
        let piece = &key[i..i + 6];
        assert!(
            !all.contains(piece),
            "`{piece}` of the key in the output:\n{all}"
        );
    }
}

/// A file with another number of values per joint is refused naming the file, instead of
/// failing inside a kernel ("channel_affine_act: scale must have shape …").
#[test]
fn wrong_channel_count_is_refused_naming_the_file() {
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    let f = tmp.path().join("c16.npy");
    let vals: Vec<f32> = (0..10 * 25 * 16).map(|i| (i % 7) as f32 * 0.1).collect();
    crossglg_data::read::npy::write_npy_f32(&f, &[10, 25, 16], &vals).unwrap();
    let fs = f.to_str().unwrap();
    let o = crossglg(&["embed", "--model", &d.run, "--out", "/dev/null", fs]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("c16.npy") && e.contains("16 values per joint") && !e.contains("channel_affine"),
        "{e}"
    );
}

/// Error chains say each thing once ("No such file or directory" used to appear twice or three
/// times: once in the message, again from each `source()`).
#[test]
fn errors_do_not_repeat_their_cause() {
    for args in [
        vec!["data", "inspect", "/nonexistent.skeleton"],
        vec!["train", "-c", "/nonexistent.toml"],
        vec!["text", "validate", "/nonexistent.json"],
        vec![
            "recognize",
            "--model",
            "/nonexistent",
            "--gallery",
            "/tmp/x.g",
            "/x.npy",
        ],
    ] {
        let o = crossglg(&args);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert_eq!(
            e.matches("No such file or directory").count(),
            1,
            "{args:?}: {e}"
        );
    }
}

/// A layout of the user's own, named anything: `data convert --layout my.toml` packs with it
/// (the packed file carries it whole), and a description file written for that layout file
/// validates against it, compared by joints, not by name.
#[test]
fn own_layout_file_works_for_convert_and_descriptions() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let ntu = ok(&["data", "layouts", "ntu25"]);
    let mine: String = ntu
        .lines()
        .map(|l| {
            if l.starts_with("name = ") {
                "name = \"my25\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(p("my25.toml"), &mine).unwrap();
    ok(&[
        "data",
        "synth",
        "--out",
        &p("files"),
        "--classes",
        "wave,kick",
        "--samples-per-class",
        "2",
    ]);
    let out = ok(&[
        "data",
        "convert",
        "--format",
        "npy",
        &p("files"),
        "--layout",
        &p("my25.toml"),
        "--out",
        &p("my.safetensors"),
    ]);
    assert!(out.contains("4 samples"), "{out}");
    let inspect = ok(&["data", "inspect", &p("my.safetensors")]);
    assert!(inspect.contains("layout my25"), "{inspect}");

    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crossglg-text/descriptions/ntu120.json");
    let mut d: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(shipped).unwrap()).unwrap();
    d["layout"] = "my25.toml".into();
    std::fs::write(p("d.json"), d.to_string()).unwrap();
    let v = ok(&[
        "text",
        "validate",
        &p("d.json"),
        "--layout",
        &p("my25.toml"),
    ]);
    assert!(v.contains("valid"), "{v}");
    // a layout with one joint renamed is told apart by its joints, briefly
    std::fs::write(p("other.toml"), mine.replace("\"head\"", "\"skull\"")).unwrap();
    let o = crossglg(&[
        "text",
        "validate",
        &p("d.json"),
        "--layout",
        &p("other.toml"),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        e.contains("joint 3 is `head` against `skull`") && e.contains("more problems"),
        "{e}"
    );
}

/// With stderr not a terminal (here a pipe), training logs plain progress lines at a steady
/// interval instead of an invisible bar.
#[test]
fn progress_lines_when_stderr_is_not_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_crossglg"))
        .args(["demo", "--out"])
        .arg(tmp.path().join("run"))
        .args(["--text-encoder", "hashed", "--set", "epochs=1"])
        .args([
            "--set",
            "data.synthetic.samples_per_class=6",
            "--set",
            "preprocess.frames=16",
        ])
        .env("CROSSGLG_PROGRESS_SECS", "0")
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{e}");
    let lines: Vec<&str> = e
        .lines()
        .filter(|l| l.starts_with("training steps: "))
        .collect();
    assert!(lines.len() >= 3, "{e}");
    assert!(
        lines[0].contains("0/") && lines.last().unwrap().ends_with("(done)"),
        "{e}"
    );
    assert!(lines.iter().any(|l| l.contains("loss")), "{e}");
}

/// Model folders are found where a user expects (`$CROSSGLG_MODELS`, the Hugging Face cache),
/// and outside a checkout nothing is found from a path compiled into the binary.
#[test]
fn text_models_are_found_where_users_expect() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = |dir: &Path| {
        std::fs::create_dir_all(dir).unwrap();
        for f in ["config.json", "tokenizer.json", "model.safetensors"] {
            std::fs::write(dir.join(f), "{}").unwrap();
        }
    };
    let mine = tmp.path().join("mine");
    fake(&mine.join("my-encoder"));
    let hf = tmp.path().join("hf");
    fake(&hf.join("hub/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/r1"));
    let home = tmp.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |envs: &[(&str, &Path)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crossglg"));
        c.args(["text", "models"]).current_dir(tmp.path());
        for k in [
            "CROSSGLG_MODELS",
            "CROSSGLG_HOME",
            "HF_HOME",
            "HF_HUB_CACHE",
            "XDG_CACHE_HOME",
        ] {
            c.env_remove(k);
        }
        c.env("HOME", &home);
        for (k, v) in envs {
            c.env(k, v);
        }
        String::from_utf8(c.output().unwrap().stdout).unwrap()
    };
    let out = run(&[("CROSSGLG_MODELS", &mine), ("HF_HOME", &hf)]);
    assert!(out.contains("my-encoder\t$CROSSGLG_MODELS"), "{out}");
    assert!(
        out.contains("snapshots/r1\tthe Hugging Face cache"),
        "{out}"
    );
    let bare = run(&[]);
    assert!(bare.contains("no sentence encoder found"), "{bare}");
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    assert!(!bare.contains(workspace.to_str().unwrap()), "{bare}");
}

/// pyskl pickles: class names from `--classes FILE`, and for NTU pickles the official names by
/// default (what description files match), so training with text can start from a pickle.
#[test]
fn pyskl_pickles_get_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crossglg-data/tests/fixtures/pyskl/ntu_p2.pkl");
    let f = fixture.to_str().unwrap();
    let classes = |packed: &str| {
        crossglg_data::pack::Packed::open(Path::new(packed))
            .unwrap()
            .classes()
            .to_vec()
    };
    ok(&[
        "data",
        "convert",
        "--format",
        "pyskl",
        f,
        "--layout",
        "ntu25",
        "--out",
        &p("a.safetensors"),
    ]);
    let c = classes(&p("a.safetensors"));
    assert_eq!((c.len(), c[12].as_str()), (13, "tear up paper"));
    let names: Vec<String> = (0..13).map(|i| format!("action {i}")).collect();
    std::fs::write(p("names.txt"), names.join("\n")).unwrap();
    ok(&[
        "data",
        "convert",
        "--format",
        "pyskl",
        f,
        "--layout",
        "ntu25",
        "--classes",
        &p("names.txt"),
        "--out",
        &p("b.safetensors"),
    ]);
    assert_eq!(classes(&p("b.safetensors")), names);
    std::fs::write(p("short.txt"), "a\nb\n").unwrap();
    let o = crossglg(&[
        "data",
        "convert",
        "--format",
        "pyskl",
        f,
        "--layout",
        "ntu25",
        "--classes",
        &p("short.txt"),
        "--out",
        &p("c.safetensors"),
    ]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("is 12, but only 2 class names"),
        "{e}"
    );
}

/// `--json` on the commands that report results: stdout is one JSON document.
#[test]
fn json_output_of_train_and_enroll() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let out = ok(&[
        "demo",
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--json",
        "--text-encoder",
        "hashed",
    ]
    .iter()
    .chain(&QUICK)
    .copied()
    .collect::<Vec<_>>());
    let v: serde_json::Value = serde_json::from_str(&out).expect("demo --json prints JSON only");
    assert_eq!(v["epochs"], 1);
    assert!(
        v["reports"].as_array().is_some_and(|r| !r.is_empty()),
        "{v}"
    );
    assert_eq!(v["run_dir"], run.to_str().unwrap());
    let d = demo();
    let g = tmp.path().join("g.gallery");
    let out = ok(&[
        "enroll",
        "--model",
        &d.run,
        "--gallery",
        g.to_str().unwrap(),
        "--name",
        "wave",
        "--json",
        &d.by_class("wave")[0],
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (
            v["class"].as_str(),
            v["added"].as_u64(),
            v["classes"].as_u64()
        ),
        (Some("wave"), Some(1), Some(1))
    );
}

/// A pickle written the way pyskl writes NTU annotations (protocol 2, `keypoint` float32
/// `[M, T, V, 3]`, `frame_dir`, `label`, `total_frames`), built here byte by byte: 5 actions ×
/// 6 samples of the synthetic generator's motions, labelled 0..4.
fn pyskl_pickle(ds: &crossglg_data::Dataset) -> Vec<u8> {
    let s = |p: &mut Vec<u8>, t: &str| {
        p.push(b'X');
        p.extend((t.len() as u32).to_le_bytes());
        p.extend(t.as_bytes());
    };
    let int = |p: &mut Vec<u8>, v: u32| {
        p.push(b'J');
        p.extend((v as i32).to_le_bytes());
    };
    let mut p = b"\x80\x02}(".to_vec();
    s(&mut p, "split");
    p.extend(b"}(");
    s(&mut p, "xsub_train");
    p.extend(b"](");
    for smp in &ds.samples {
        s(&mut p, &smp.meta.name);
    }
    p.extend(b"eu");
    s(&mut p, "annotations");
    p.extend(b"](");
    for smp in &ds.samples {
        let sk = &smp.skeleton;
        p.extend(b"}(");
        s(&mut p, "frame_dir");
        s(&mut p, &smp.meta.name);
        s(&mut p, "label");
        int(&mut p, smp.meta.label.unwrap() as u32);
        s(&mut p, "total_frames");
        int(&mut p, sk.frames as u32);
        s(&mut p, "keypoint");
        p.extend(
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85C\x01b\x87R(K\x01(",
        );
        for d in [sk.persons, sk.frames, sk.joints, sk.channels] {
            int(&mut p, d as u32);
        }
        p.extend(b"tcnumpy\ndtype\nX\x02\x00\x00\x00f4\x89\x88\x87R(K\x03X\x01\x00\x00\x00<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89B");
        let data: Vec<u8> = sk.data.iter().flat_map(|x| x.to_le_bytes()).collect();
        p.extend((data.len() as u32).to_le_bytes());
        p.extend(data);
        p.extend(b"tbu");
    }
    p.extend(b"eu.");
    p
}

/// From a pyskl pickle to a model trained with text guidance: the NTU pickle's classes get the
/// official names, the shipped NTU-120 descriptions match them by name, and training with both
/// guidances runs and reports one-shot results on the novel actions.
#[test]
fn pyskl_pickle_through_training_with_text() {
    use crossglg_data::synth::{generate, SynthConfig};
    let tmp = tempfile::tempdir().unwrap();
    let p = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let ds = generate(&SynthConfig {
        classes: ["wave", "kick", "squat", "clap", "bow"]
            .map(String::from)
            .to_vec(),
        samples_per_class: 6,
        frames: [20, 30],
        ..SynthConfig::default()
    })
    .unwrap();
    std::fs::write(p("ntu.pkl"), pyskl_pickle(&ds)).unwrap();
    ok(&[
        "data",
        "convert",
        "--format",
        "pyskl",
        &p("ntu.pkl"),
        "--layout",
        "ntu25",
        "--out",
        &p("ntu.safetensors"),
    ]);
    let packed = crossglg_data::pack::Packed::open(Path::new(&p("ntu.safetensors"))).unwrap();
    assert_eq!(packed.classes()[0], "drink water");
    // novel: the last two actions, one exemplar each (the first sample of each)
    let first = |label: usize| {
        ds.samples
            .iter()
            .find(|s| s.meta.label == Some(label))
            .unwrap()
            .meta
            .name
            .clone()
    };
    std::fs::write(
        p("split.toml"),
        format!(
            "name = \"pickle\"\nnovel = [3, 4]\nauxiliary = [0, 1, 2]\n[exemplars]\n3 = \"{}\"\n4 = \"{}\"\n",
            first(3),
            first(4)
        ),
    )
    .unwrap();
    let descriptions =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../crossglg-text/descriptions/ntu120.json");
    let config = format!(
        r#"recipe = "target"
seed = 0
epochs = 1
batch_size = 8
[data]
packed = "{packed}"
split = "{split}"
[text]
descriptions = "{desc}"
encoder = "hashed"
[preprocess]
persons = 1
frames = 16
[model]
guidance = "both"
[model.encoder]
kind = "ctr_gcn"
blocks = [{{ channels = 16, stride = 1 }}, {{ channels = 16, stride = 2 }}]
[model.jid]
after_block = 1
hidden = 8
[model.interaction]
dim = 16
heads = 2
depth = 1
mlp_ratio = 2
"#,
        packed = p("ntu.safetensors"),
        split = p("split.toml"),
        desc = descriptions.display()
    );
    std::fs::write(p("config.toml"), config).unwrap();
    let out = ok(&[
        "train",
        "-c",
        &p("config.toml"),
        "--out",
        &p("run"),
        "--quiet",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let classes = v["reports"][0]["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 2, "{v}");
    assert!(classes.iter().any(|c| c == "brushing hair"), "{v}");
}

/// OpenPose output (a folder of BODY_25 per-frame JSON) enrolled and recognised by a model of
/// the NTU layout through the shipped `body25_to_ntu25` mapping.
#[test]
fn openpose_output_through_a_mapping() {
    let d = demo();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("openpose");
    std::fs::create_dir_all(&dir).unwrap();
    for t in 0..40 {
        let kp: Vec<f64> = (0..25)
            .flat_map(|v| {
                let v = v as f64;
                [
                    100.0 + 5.0 * v + 10.0 * (t as f64 / 5.0 + v).sin(),
                    200.0 + 8.0 * v,
                    0.9,
                ]
            })
            .collect();
        let f = serde_json::json!({ "people": [{ "person_id": [-1], "pose_keypoints_2d": kp }] });
        std::fs::write(
            dir.join(format!("clip_{t:012}_keypoints.json")),
            f.to_string(),
        )
        .unwrap();
    }
    let inspect = ok(&["data", "inspect", dir.to_str().unwrap()]);
    assert!(inspect.contains("openpose, layout body25"), "{inspect}");
    let g = tmp.path().join("g.gallery");
    let (gs, ds) = (g.to_str().unwrap(), dir.to_str().unwrap());
    let m = ["--mapping", "body25_to_ntu25"];
    ok(&[
        &[
            "enroll",
            "--model",
            &d.run,
            "--gallery",
            gs,
            "--name",
            "sway",
        ][..],
        &m,
        &[ds],
    ]
    .concat());
    let out = ok(&[
        &["recognize", "--model", &d.run, "--gallery", gs, "--json"][..],
        &m,
        &[ds],
    ]
    .concat());
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["recognition"]["class"], "sway", "{v}");
    // a mapping from another layout (17 COCO joints) is refused for 25-joint BODY_25 input
    let o = crossglg(&[
        "recognize",
        "--model",
        &d.run,
        "--gallery",
        gs,
        "--mapping",
        "coco17_to_ntu25",
        ds,
    ]);
    assert!(
        !o.status.success(),
        "a COCO mapping must not accept BODY_25 input"
    );
}

/// A sweep as independent runs: the plan as commands, two runs as two processes, the summary
/// read back from their folders (`--collect` gives the same table), and a Slurm job array.
#[test]
fn sweep_runs_as_processes_and_plans_for_slurm() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo.toml");
    let out = tmp.path().join("sweep");
    let base = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "sweep",
            "-c",
            config.to_str().unwrap(),
            "--sizes",
            "6,12",
            "--seeds",
            "3",
            "--set",
            "epochs=1",
            "--set",
            "eval.draws=0",
            "--set",
            "text.encoder=hashed",
            "--set",
            "data.synthetic.samples_per_class=6",
            "--set",
            "preprocess.frames=16",
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let run = |extra: &[&str]| {
        let args = base(extra);
        ok(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let plan = run(&["--plan"]);
    let lines: Vec<&str> = plan.lines().collect();
    assert_eq!(lines.len(), 2, "{plan}");
    assert!(lines[1].contains("data.auxiliary=12") && lines[1].contains("aux12-seed3"));
    assert!(!out.exists(), "--plan trains nothing");

    let table = run(&["--processes", "2", "--quiet"]);
    for k in ["6", "12"] {
        assert!(out.join(format!("aux{k}-seed3/report.json")).is_file());
        assert!(table.contains(&format!("| {k} |")), "{table}");
    }
    assert_eq!(
        run(&["--collect"]),
        table,
        "collect reads the same results back"
    );

    let script = tmp.path().join("k.sbatch");
    run(&["--slurm", script.to_str().unwrap()]);
    let s = std::fs::read_to_string(&script).unwrap();
    assert!(
        s.contains("#SBATCH --array=0-1") && s.contains("--gres=gpu:1"),
        "{s}"
    );
    let commands = std::fs::read_to_string(tmp.path().join("k.commands")).unwrap();
    assert_eq!(commands.lines().count(), 2);

    // --collect on runs that do not exist says which folder lacks what
    let missing = tmp.path().join("none");
    let mut args = base(&["--collect"]);
    let pos = args
        .iter()
        .position(|a| a == out.to_str().unwrap())
        .unwrap();
    args[pos] = missing.to_str().unwrap().into();
    let o = crossglg(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("aux6-seed3"), "{err}");
}

/// Data-parallel launch as far as a CPU machine takes it: torchrun's variables are read and
/// checked, a CPU device is refused, and `--nproc` starts its ranks with those variables and
/// stops the run, naming the rank, when a rank fails.
#[test]
fn data_parallel_launch_checks_its_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/demo.toml");
    let out = tmp.path().join("ddp");
    let train = |env: &[(&str, &str)], extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_crossglg"));
        c.args(["train", "-c", config.to_str().unwrap(), "--quiet"])
            .args(["--set", "epochs=1", "--set", "text.encoder=hashed"])
            .args(["--out", out.to_str().unwrap()])
            .args(extra)
            .env_remove("WORLD_SIZE")
            .env_remove("RANK");
        for (k, v) in env {
            c.env(k, v);
        }
        let o = c.output().unwrap();
        assert!(!o.status.success(), "{env:?} {extra:?} should fail");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = train(
        &[("WORLD_SIZE", "2"), ("RANK", "5")],
        &["--set", "device=cuda"],
    );
    assert!(e.contains("RANK") && e.contains("below 2"), "{e}");
    let e = train(
        &[("WORLD_SIZE", "2"), ("RANK", "0")],
        &["--set", "device=cpu"],
    );
    assert!(e.contains("runs on GPUs"), "{e}");
    // every rank gets the variables and fails the same way; the launcher names a rank
    let e = train(&[], &["--set", "device=cpu", "--nproc", "2"]);
    assert!(e.contains("runs on GPUs"), "{e}");
    assert!(e.contains("of 2 failed"), "{e}");
    let e = train(&[("WORLD_SIZE", "2"), ("RANK", "0")], &["--nproc", "2"]);
    assert!(e.contains("WORLD_SIZE is already set"), "{e}");
    assert!(!out.join("last.safetensors").exists());
}

/// The shipped `nwucla-msr-cpu.toml` on the real files: MSR Action3D's samples (msr20 order)
/// join NW-UCLA's training in nwucla20 order with their own descriptions, and the evaluation
/// stays on NW-UCLA's 5 novel classes.
#[test]
fn nwucla_trains_with_msr_classes_added() {
    let tmp = tempfile::tempdir().unwrap();
    let mut packed = Vec::new();
    for (format, dir) in [
        ("nwucla", "nw-ucla/all_sqe"),
        ("msr", "msr-action3d/MSRAction3DSkeletonReal3D"),
    ] {
        packed.push(convert_real(format, dir, tmp.path()));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let msr_text = root.join("crates/crossglg-text/descriptions/msr-action3d.json");
    let run = tmp.path().join("run");
    let out = ok(&[
        "train",
        "--config",
        root.join("configs/nwucla-msr-cpu.toml").to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--quiet",
        "--json",
        "--set",
        &format!("data.packed={:?}", packed[0]),
        "--set",
        &format!(
            "data.extra=[{{ packed = {:?}, descriptions = {:?} }}]",
            packed[1], msr_text
        ),
        "--set",
        "text.encoder=hashed",
        "--set",
        "epochs=1",
        "--set",
        "eval.draws=0",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let reports = v["reports"].as_array().unwrap();
    assert!(!reports.is_empty(), "{v}");
    for r in reports {
        let classes: Vec<&str> = r["classes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        // NW-UCLA's novel classes only: no MSR class is ever evaluated
        assert_eq!(classes.len(), 5, "{classes:?}");
        assert!(classes.contains(&"sit down"), "{classes:?}");
    }
    // 5 NW-UCLA auxiliary classes + MSR's 20 are trained
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(config.contains("[[data.extra]]"), "{config}");
    assert!(config.contains("num_classes = 25"), "{config}");
}
