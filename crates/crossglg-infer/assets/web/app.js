// The crossglg page: load or generate a sequence, play it, colour joints by the model's joint
// importance, recognise, enroll, manage the gallery, and stream. Plain JS, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  model: null,       // GET /api/model
  seq: null,         // {name, frames, joints, data: Float32 frames×joints×3, body, json}
  importance: null,  // per joint, or null
  frame: 0,
  playing: true,
  token: sessionStorage.getItem("crossglg-token") || "",
};

function status(msg, error = false) {
  const s = $("status");
  s.textContent = msg;
  s.classList.toggle("error", error);
}

async function api(path, opts = {}) {
  const headers = Object.assign({}, opts.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const r = await fetch(path, Object.assign({}, opts, { headers }));
  if (r.status === 401) {
    $("auth").classList.remove("hidden");
    throw new Error("this server needs a token");
  }
  const text = await r.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (e) { body = { error: text }; }
  if (!r.ok) throw new Error((body && body.error) || r.status + " " + r.statusText);
  return body;
}

// ---- model and gallery -------------------------------------------------------------------

async function loadModel() {
  state.model = await api("/api/model");
  const m = state.model;
  $("model").textContent =
    `layout ${m.layout.name} (${m.layout.joints.length} joints) · embedding ${m.dim} · ` +
    (m.threshold == null ? "no unknown threshold" : `unknown below ${m.threshold.toFixed(3)}`) +
    (m.described_classes ? ` · ${m.described_classes.length} described classes` : "");
  await loadClasses();
}

async function loadClasses() {
  const g = await api("/api/classes");
  $("gallery-count").textContent = `${g.classes.length} classes, ${g.exemplars} exemplars`;
  const ul = $("classes");
  ul.innerHTML = "";
  for (const c of g.classes) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = `${c.name} (${c.exemplars})`;
    const ren = document.createElement("button");
    ren.textContent = "rename";
    ren.onclick = () => renameClass(c.name);
    const del = document.createElement("button");
    del.textContent = "delete";
    del.onclick = () => deleteClass(c.name);
    li.append(name, ren, del);
    ul.append(li);
  }
  return g;
}

async function renameClass(name) {
  const to = prompt(`Rename "${name}" to:`, name);
  if (!to || to === name) return;
  try {
    await api("/api/classes/" + encodeURIComponent(name), {
      method: "PATCH",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: to }),
    });
    await loadClasses();
    status(`renamed ${name} to ${to}`);
  } catch (e) { status(e.message, true); }
}

async function deleteClass(name) {
  if (!confirm(`Delete "${name}" and its exemplars?`)) return;
  try {
    await api("/api/classes/" + encodeURIComponent(name), { method: "DELETE" });
    await loadClasses();
    status(`deleted ${name}`);
  } catch (e) { status(e.message, true); }
}

// ---- sequences ---------------------------------------------------------------------------

// A request for the loaded sequence: the file as it was dropped, or JSON frames.
function requestFor(path, extraQuery = "") {
  const s = state.seq;
  if (s.file) {
    const q = "filename=" + encodeURIComponent(s.file.name) + extraQuery;
    return [path + "?" + q, { method: "POST", body: s.file,
      headers: { "Content-Type": "application/octet-stream" } }];
  }
  return [path + (extraQuery ? "?" + extraQuery.slice(1) : ""), { method: "POST",
    body: JSON.stringify({ name: s.name, frames: framesOf(s) }),
    headers: { "Content-Type": "application/json" } }];
}

function framesOf(s) {
  const out = [];
  for (let t = 0; t < s.frames; t++) {
    const f = [];
    for (let v = 0; v < s.joints; v++) {
      const i = (t * s.joints + v) * 3;
      f.push([s.data[i], s.data[i + 1], s.data[i + 2]]);
    }
    out.push(f);
  }
  return out;
}

// A made-up motion in the model's layout: each bone a fixed direction from its parent, the
// limbs swinging with a per-joint phase. `variant` changes the motion.
function generate(variant = 0, frames = 48) {
  const L = state.model.layout;
  const V = L.joints.length;
  const parent = new Array(V).fill(-1);
  for (const [c, p] of L.edges) if (parent[c] === -1 && c !== p) parent[c] = p;
  const depth = (v) => { let d = 0; while (parent[v] >= 0 && d < V) { v = parent[v]; d++; } return d; };
  const data = new Float32Array(frames * V * 3);
  const hash = (v, k) => Math.sin(v * 12.9898 + k * 78.233 + variant * 3.1) * 43758.5453 % 1;
  for (let t = 0; t < frames; t++) {
    const pos = new Array(V);
    const order = [...Array(V).keys()].sort((a, b) => depth(a) - depth(b));
    for (const v of order) {
      if (parent[v] < 0) { pos[v] = [0, 0, 0]; continue; }
      const p = pos[parent[v]] || [0, 0, 0];
      const phase = 2 * Math.PI * (t / frames) * (1 + (variant % 3)) + v;
      const swing = 0.4 * Math.sin(phase) * (depth(v) > 1 ? 1 : 0.2);
      const dx = 0.15 * hash(v, 1) + 0.1 * swing;
      const dy = -0.2 + 0.05 * hash(v, 2) + 0.05 * Math.cos(phase);
      const dz = 0.1 * hash(v, 3) + 0.1 * swing;
      pos[v] = [p[0] + dx, p[1] + dy, p[2] + dz];
    }
    for (let v = 0; v < V; v++) data.set(pos[v], (t * V + v) * 3);
  }
  return { name: `generated-${variant}`, frames, joints: V, data, file: null };
}

async function setSequence(seq) {
  state.seq = seq;
  state.frame = 0;
  state.importance = null;
  $("seek").max = Math.max(0, (seq.frames || 1) - 1);
  await decodeLoaded();
  for (const id of ["play", "seek", "enroll", "stream"]) $(id).disabled = !state.seq.frames;
  status(`loaded ${seq.name}: ${state.seq.frames} frames`);
  await recognizeLoaded();
}

// The sequence as the server reads it (for a dropped file) and the model's joint importance.
async function decodeLoaded() {
  const [url, opts] = requestFor("/api/decode");
  const r = await api(url, opts);
  const row = r.results[0];
  if (state.seq.file) {
    state.seq.frames = row.skeleton.frames;
    state.seq.joints = row.skeleton.joints;
    state.seq.data = Float32Array.from(row.skeleton.data);
    state.seq.box = null;
    $("seek").max = Math.max(0, row.skeleton.frames - 1);
  }
  state.importance = row.joint_importance;
  return row;
}

async function recognizeLoaded() {
  const g = await loadClasses();
  const described = state.model.described_classes && state.model.described_classes.length;
  if (!g.classes.length && !described) {
    $("decision").textContent = "the gallery is empty: enroll this sequence as a first class";
    $("decision").className = "decision";
    $("top").innerHTML = "";
    showDescribed(null);
    return null;
  }
  const [url, opts] = requestFor("/api/recognize");
  const r = await api(url, opts);
  const row = r.results[0];
  showRecognition(row);
  return row;
}

function showRecognition(row) {
  const rec = row.recognition;
  const d = $("decision");
  if (!rec) {
    // an empty gallery, served with descriptions: they answer alone
    d.textContent = "the gallery is empty: enroll this sequence as a first class";
    d.className = "decision";
    $("top").innerHTML = "";
    showDescribed(row.described);
    state.importance = row.joint_importance;
    status(`${row.name}: from the descriptions alone ${row.described.zero_shot.class}`);
    return;
  }
  d.textContent = rec.unknown ? `unknown (closest: ${rec.class})` : rec.class;
  d.className = "decision " + (rec.unknown ? "unknown" : "known");
  const ol = $("top");
  ol.innerHTML = "";
  for (const c of row.top) {
    const li = document.createElement("li");
    li.textContent = `${c.class} ${c.similarity.toFixed(3)}`;
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.width = Math.max(2, 100 * Math.max(0, c.similarity)) + "px";
    li.append(bar);
    ol.append(li);
  }
  showDescribed(row.described);
  state.importance = row.joint_importance;
  status(`${row.name}: ${d.textContent}, similarity ${rec.similarity.toFixed(3)}, margin ${rec.margin.toFixed(3)}`);
}

// `serve --describe`: what the class descriptions say (zero-shot, and the description prior)
function showDescribed(described) {
  const box = $("described");
  box.innerHTML = "";
  box.classList.toggle("hidden", !described);
  if (!described) return;
  const line = (label, text) => {
    const div = document.createElement("div");
    const b = document.createElement("b");
    b.textContent = text;
    div.append(label, b);
    box.append(div);
  };
  const z = described.zero_shot;
  line("from the descriptions alone: ", `${z.class} (${z.text_similarity.toFixed(3)})`);
  const p = described.prior;
  if (p) {
    line("gallery with the description prior: ", p.unknown ? `unknown (closest: ${p.class})` : p.class);
  } else if ((described.undescribed || []).length) {
    line("no description prior: not described: ", described.undescribed.join(", "));
  } else {
    line("no description prior: ", "it needs two enrolled classes");
  }
}

async function enrollLoaded(name) {
  const [url, opts] = requestFor("/api/classes/" + encodeURIComponent(name));
  const r = await api(url, opts);
  status(`enrolled ${state.seq.name} as ${r.class} (${r.exemplars} exemplars); ${r.classes} classes`);
  await recognizeLoaded();
  return r;
}

// ---- drawing -----------------------------------------------------------------------------

function colour(w) {
  // blue (low) → green → yellow → red (high), as the legend
  const h = 220 - 220 * Math.min(1, Math.max(0, w));
  return `hsl(${h} 85% 55%)`;
}

function draw() {
  const c = $("canvas");
  const ctx = c.getContext("2d");
  ctx.clearRect(0, 0, c.width, c.height);
  const s = state.seq;
  if (!s || !s.frames || !s.data || !s.data.length) return;
  const V = s.joints;
  const yaw = (+$("yaw").value * Math.PI) / 180;
  const threeD = $("view3d").checked;
  const project = (x, y, z) => threeD
    ? [x * Math.cos(yaw) + z * Math.sin(yaw), y]
    : [x, y];
  // fit every frame: the view does not jump while playing
  if (!s.box || s.box.yaw !== yaw || s.box.threeD !== threeD) {
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (let i = 0; i < s.data.length; i += 3) {
      if (s.data[i] === 0 && s.data[i + 1] === 0 && s.data[i + 2] === 0) continue;
      const [px, py] = project(s.data[i], s.data[i + 1], s.data[i + 2]);
      x0 = Math.min(x0, px); x1 = Math.max(x1, px); y0 = Math.min(y0, py); y1 = Math.max(y1, py);
    }
    s.box = { x0, y0, x1, y1, yaw, threeD };
  }
  const b = s.box;
  const scale = 0.85 * Math.min(c.width / Math.max(1e-6, b.x1 - b.x0), c.height / Math.max(1e-6, b.y1 - b.y0));
  const cx = (b.x0 + b.x1) / 2, cy = (b.y0 + b.y1) / 2;
  const t = Math.min(state.frame, s.frames - 1);
  const pt = (v) => {
    const i = (t * V + v) * 3;
    const [px, py] = project(s.data[i], s.data[i + 1], s.data[i + 2]);
    // y up in skeleton data, down on the canvas
    return [c.width / 2 + (px - cx) * scale, c.height / 2 - (py - cy) * scale];
  };
  const edges = state.model && state.model.layout.joints.length === V ? state.model.layout.edges : [];
  const imp = state.importance && state.importance.length === V ? state.importance : null;
  let lo = 0, hi = 1;
  if (imp) { lo = Math.min(...imp); hi = Math.max(...imp); }
  const w = (v) => imp ? (imp[v] - lo) / Math.max(1e-9, hi - lo) : 0.3;
  ctx.lineWidth = 3;
  ctx.strokeStyle = "#8a93a6";
  for (const [a, p] of edges) {
    const [ax, ay] = pt(a), [bx, by] = pt(p);
    ctx.beginPath(); ctx.moveTo(ax, ay); ctx.lineTo(bx, by); ctx.stroke();
  }
  for (let v = 0; v < V; v++) {
    const [x, y] = pt(v);
    ctx.fillStyle = colour(w(v));
    ctx.beginPath(); ctx.arc(x, y, 4 + 6 * w(v), 0, 2 * Math.PI); ctx.fill();
  }
  $("frame").textContent = `${t + 1} / ${s.frames}`;
  $("seek").value = t;
}

let last = 0;
function tick(now) {
  if (state.seq && state.playing && now - last > 1000 / 30) {
    state.frame = (state.frame + 1) % Math.max(1, state.seq.frames);
    last = now;
  }
  draw();
  requestAnimationFrame(tick);
}

// ---- stream ------------------------------------------------------------------------------

function streamLoaded(onEvent) {
  return new Promise((resolve, reject) => {
    const s = state.seq;
    const proto = location.protocol === "https:" ? "wss:" : "ws:";
    const q = state.token ? "?token=" + encodeURIComponent(state.token) : "";
    const ws = new WebSocket(`${proto}//${location.host}/api/stream${q}`);
    const events = [];
    $("events").innerHTML = "";
    let expected = 1;
    ws.onopen = () => {
      const frames = framesOf(s);
      // enough frames (looping the sequence) for at least three windows
      const w = state.model.window, h = state.model.hop;
      const n = Math.max(w + 2 * h, frames.length);
      for (let t = 0; t < n; t++) {
        ws.send(JSON.stringify({ t: t / 30, joints: frames[t % frames.length] }));
      }
      expected = Math.floor((n - w) / h) + 1;
      // a server that answers less must not hang the page
      setTimeout(() => ws.close(), 15000);
    };
    ws.onmessage = (m) => {
      const ev = JSON.parse(m.data);
      events.push(ev);
      const li = document.createElement("li");
      li.textContent = ev.error ? "error: " + ev.error : streamLine(ev);
      $("events").append(li);
      if (onEvent) onEvent(ev);
      if (events.length >= expected) ws.close();
    };
    ws.onerror = () => reject(new Error("stream connection failed"));
    ws.onclose = () => resolve(events);
  });
}

// One window's answer: the gallery's (none while it is empty), then the descriptions'.
function streamLine(ev) {
  const r = ev.recognition;
  const gallery = !r ? "no class enrolled"
    : `${r.unknown ? "unknown" : r.class} (${r.similarity.toFixed(3)})`;
  const text = ev.described ? `; described as ${ev.described.zero_shot.class}` : "";
  return `${ev.t_start.toFixed(2)}–${ev.t_end.toFixed(2)} s: ${gallery}${text}, ` +
    `${ev.latency_ms.toFixed(1)} ms`;
}

// ---- wiring ------------------------------------------------------------------------------

function wire() {
  $("token-save").onclick = () => {
    state.token = $("token").value;
    sessionStorage.setItem("crossglg-token", state.token);
    $("auth").classList.add("hidden");
    start();
  };
  $("file").onchange = (e) => loadFile(e.target.files[0]);
  const drop = $("drop");
  drop.ondragover = (e) => { e.preventDefault(); drop.classList.add("over"); };
  drop.ondragleave = () => drop.classList.remove("over");
  drop.ondrop = (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) loadFile(e.dataTransfer.files[0]);
  };
  let variant = 0;
  $("generate").onclick = () => setSequence(generate(variant++)).catch((e) => status(e.message, true));
  $("play").onclick = () => {
    state.playing = !state.playing;
    $("play").textContent = state.playing ? "Pause" : "Play";
  };
  $("seek").oninput = (e) => { state.frame = +e.target.value; };
  $("enroll").onclick = () => {
    const name = $("enroll-name").value.trim();
    if (!name) { status("give the new class a name", true); return; }
    enrollLoaded(name).catch((e) => status(e.message, true));
  };
  $("stream").onclick = () => streamLoaded().then(
    (ev) => status(`stream: ${ev.length} recognitions`),
    (e) => status(e.message, true));
}

function loadFile(file) {
  if (!file) return;
  setSequence({ name: file.name, frames: 0, joints: 0, data: null, file })
    .catch((e) => status(e.message, true));
}

// `?selftest=1`: the page's own functions, end to end against this server (the browser test
// in CI): generate, enroll, recognise, stream, rename, delete. The verdict lands in #status.
async function selftest() {
  const name = "selftest-" + Math.floor(Math.random() * 1e9);
  const fail = (why) => { throw new Error(why); };
  await setSequence(generate(7));
  if (!state.seq.frames) fail("no sequence");
  const hasText = !!(state.model.described_classes && state.model.described_classes.length);
  if (hasText && !(await loadClasses()).classes.length) {
    const first = await recognizeLoaded();
    if (!first || first.recognition !== null || !first.described.zero_shot)
      fail("no answer from the descriptions before enrolling: " + JSON.stringify(first));
    const early = await streamLoaded();
    if (!early.length || !early.every((e) => !e.error && e.recognition === null && e.described))
      fail("stream before enrolling: " + JSON.stringify(early.slice(0, 2)));
  }
  await enrollLoaded(name);
  const row = await recognizeLoaded();
  if (!row || row.recognition.class !== name) fail("recognised as " + (row && row.recognition.class));
  if (row.recognition.similarity < 0.99) fail("similarity " + row.recognition.similarity);
  const described = !!(state.model.described_classes && state.model.described_classes.length);
  if (described && !(row.described && row.described.zero_shot && $("described").textContent))
    fail("no answer from the descriptions: " + JSON.stringify(row.described));
  draw();
  const events = await streamLoaded();
  const good = events.filter((e) => !e.error);
  if (!good.length) fail("no stream events: " + JSON.stringify(events.slice(0, 2)));
  await api("/api/classes/" + encodeURIComponent(name), {
    method: "PATCH", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name: name + "-renamed" }) });
  const g = await loadClasses();
  if (!g.classes.some((c) => c.name === name + "-renamed")) fail("rename did not show");
  await api("/api/classes/" + encodeURIComponent(name + "-renamed"), { method: "DELETE" });
  status(`SELFTEST PASS: ${row.recognition.class} ${row.recognition.similarity.toFixed(3)}, ` +
    `${good.length} stream events, importance ${row.joint_importance ? "shown" : "absent"}` +
    (described ? ", descriptions shown" : ""));
}

async function start() {
  try {
    await loadModel();
    status("ready: drop a file or generate a motion");
  } catch (e) {
    status(e.message, true);
    return;
  }
  const params = new URLSearchParams(location.search);
  if (params.get("selftest")) {
    try { await selftest(); } catch (e) { status("SELFTEST FAIL: " + e.message, true); }
  } else if (params.get("demo")) {
    // a populated view for screenshots: a generated motion, recognised
    await setSequence(generate(+params.get("demo") || 1)).catch((e) => status(e.message, true));
    $("play").click();
    state.frame = 20;
  }
}

wire();
requestAnimationFrame(tick);
start();
