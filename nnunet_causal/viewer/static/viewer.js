// nnunet_causal viewer page: slices drawn on canvases from server-rendered PNGs, masks coloured here.
"use strict";

const token = new URLSearchParams(location.search).get("token");
if (token) history.replaceState(null, "", location.pathname);   // keep the token out of the address bar
const PALETTE = [[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
  [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [220, 190, 255]];
const $ = (id) => document.getElementById(id);
const ui = { case: null, state: null, views: {}, hidden: new Set(), busy: false, saved: false };

async function api(path, options = {}) {
  const headers = { "X-Viewer": "1", ...(options.body ? { "Content-Type": "application/json" } : {}) };
  if (token) headers["X-Viewer-Token"] = token;
  const r = await fetch(path, { ...options, headers });
  if (!r.ok) {
    let msg = await r.text();
    try { const j = JSON.parse(msg); msg = j.error || j.detail || msg; } catch (e) { /* plain text */ }
    throw new Error(msg);
  }
  return r;
}
const getJSON = async (path) => (await api(path)).json();
const post = async (path, body) => (await api(path, { method: "POST", body: body && JSON.stringify(body) })).json();

function status(msg, isError = false, progress = null) {
  $("status").textContent = msg;
  $("status").className = isError ? "error" : "";
  if (progress !== null) $("progress").value = progress;
}

function colour(value) { return PALETTE[(value - 1) % PALETTE.length]; }

// ---------------------------------------------------------------- jobs (the server's worker thread)
async function runJob(path, body, label) {
  if (ui.busy) return null;
  setBusy(true);
  try {
    let job = await post(path, body);
    while (job.state === "queued" || job.state === "running") {
      status(`${label}: ${job.message}`, false, job.progress);
      await new Promise((res) => setTimeout(res, 200));
      job = await getJSON(`/api/jobs/${job.id}`);
    }
    if (job.state === "error") { status(`${label}: ${job.error}`, true, 0); return null; }
    status(`${label}: done in ${job.seconds} s`, false, 1);
    await applyState(job.result);
    return job.result;
  } catch (e) {
    status(`${label}: ${e.message}`, true, 0);
    return null;
  } finally { setBusy(false); }
}

function setBusy(busy) {
  ui.busy = busy;
  const open = !!ui.state, s = ui.state || {};
  $("prompt-run").disabled = busy || !open;
  $("command-run").disabled = busy || !open;
  $("undo").disabled = busy || !s.can_undo;
  $("redo").disabled = busy || !s.can_redo;
  $("save").disabled = busy || !s.has_mask;
  document.querySelectorAll(".download").forEach((b) => { b.disabled = busy || !ui.saved; });
}

// ---------------------------------------------------------------- cases and views
async function loadCases() {
  const info = await getJSON("/api/info");
  $("model-info").textContent = `${info.model} · fold ${info.fold} · structures: ${info.structures.join(", ")}` +
    (info.intervention_weights ? " · intervention weights loaded" : " · no intervention weights (train-tci)");
  $("prompt-input").value = info.structures.join("\n");
  const list = $("case-list");
  for (const c of (await getJSON("/api/cases")).cases) {
    const li = document.createElement("li"), b = document.createElement("button");
    b.textContent = c.case; b.dataset.case = c.case; b.title = c.files.join(", ");
    b.onclick = () => openCase(c.case);
    li.appendChild(b); list.appendChild(li);
  }
  status("pick a case");
}

async function openCase(name) {
  if (ui.busy) return;
  document.querySelectorAll("#case-list button").forEach((b) => b.classList.toggle("active", b.dataset.case === name));
  status(`opening ${name}…`, false, 0);
  try {
    const state = await post(`/api/cases/${encodeURIComponent(name)}/open`);
    ui.case = name; ui.views = {}; ui.saved = false; $("saved").textContent = "";
    buildViews(state.image);
    await applyState(state);
    status(`${name} open: type prompts and press Segment`, false, 0);
  } catch (e) { status(e.message, true, 0); }
}

function buildViews(image) {
  const viewer = $("viewer");
  viewer.innerHTML = "";
  for (const [view, info] of Object.entries(image.views)) {
    const box = document.createElement("div"), canvas = document.createElement("canvas");
    const slider = document.createElement("input"), label = document.createElement("div");
    box.className = "view"; box.dataset.view = view;
    const side = Object.keys(image.views).length > 1 ? 340 : 512;   // three views of a volume side by side
    const [h, w] = info.size, scale = Math.min(side / w, side / (h * info.aspect), 16);
    canvas.width = Math.round(w * scale); canvas.height = Math.round(h * info.aspect * scale);
    canvas.dataset.view = view; canvas.dataset.overlayPixels = "0";
    slider.type = "range"; slider.min = 0; slider.max = info.slices - 1;
    slider.value = Math.floor(info.slices / 2); slider.hidden = info.slices === 1;
    const v = ui.views[view] = { canvas, slider, label, info, index: +slider.value, image: null, labels: null,
      drawing: false, again: false };
    slider.oninput = () => { v.index = +slider.value; drawView(view, true); };
    canvas.onwheel = (e) => {
      e.preventDefault();
      v.index = Math.max(0, Math.min(info.slices - 1, v.index + Math.sign(e.deltaY)));
      slider.value = v.index; drawView(view, true);
    };
    box.append(label, canvas, slider); viewer.appendChild(box);
  }
}

async function fetchBitmap(path) {
  const blob = await (await api(path)).blob();
  return createImageBitmap(blob, { colorSpaceConversion: "none", premultiplyAlpha: "none" });
}

async function drawView(view, newSlice) {
  const v = ui.views[view];
  if (!v) return;
  if (v.drawing) { v.again = v.again || newSlice || true; return; }   // coalesce fast scrolling
  v.drawing = true;
  try {
    const base = `/api/cases/${encodeURIComponent(ui.case)}`;
    const state = ui.state, index = v.index;
    if (newSlice || !v.image || v.imageIndex !== index) { v.image = await fetchBitmap(`${base}/image/${view}/${index}`); v.imageIndex = index; }
    if (state && state.has_mask && (newSlice || v.labelsVersion !== state.version || v.labelsIndex !== index)) {
      const bmp = await fetchBitmap(`${base}/mask/${view}/${index}?v=${state.version}`);
      const off = new OffscreenCanvas(bmp.width, bmp.height), ctx = off.getContext("2d", { willReadFrequently: true });
      ctx.drawImage(bmp, 0, 0);
      v.labels = ctx.getImageData(0, 0, bmp.width, bmp.height);
      v.labelsVersion = state.version; v.labelsIndex = index;
    } else if (!state || !state.has_mask) { v.labels = null; }
    paint(view);
  } catch (e) { status(e.message, true); }
  finally {
    v.drawing = false;
    if (v.again) { v.again = false; drawView(view, true); }
  }
}

function paint(view) {
  const v = ui.views[view], ctx = v.canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(v.image, 0, 0, v.canvas.width, v.canvas.height);
  let pixels = 0;
  if (v.labels) {
    const src = v.labels.data, out = new ImageData(v.labels.width, v.labels.height), alpha = Math.round(255 * +$("opacity").value);
    for (let i = 0; i < src.length; i += 4) {
      const value = src[i];
      if (value === 0 || ui.hidden.has(value)) continue;
      const [r, g, b] = colour(value);
      out.data[i] = r; out.data[i + 1] = g; out.data[i + 2] = b; out.data[i + 3] = alpha; pixels++;
    }
    const off = new OffscreenCanvas(out.width, out.height);
    off.getContext("2d").putImageData(out, 0, 0);
    ctx.drawImage(off, 0, 0, v.canvas.width, v.canvas.height);
  }
  v.canvas.dataset.overlayPixels = String(pixels);
  v.label.textContent = `${view} ${v.index + 1}/${v.info.slices}`;
}

function redrawAll(newSlice = false) { for (const view of Object.keys(ui.views)) drawView(view, newSlice); }

// ---------------------------------------------------------------- state: layers, edit log
async function applyState(state) {
  ui.state = state;
  renderLayers(state.layers);
  renderLog(state.edit_log);
  setBusy(ui.busy);
  await Promise.all(Object.keys(ui.views).map((view) => drawView(view, false)));
  $("viewer").dataset.maskVersion = String(state.has_mask ? state.version : 0);
}

function renderLayers(layers) {
  const ul = $("layers");
  ul.innerHTML = "";
  for (const l of layers) {
    const li = document.createElement("li"), box = document.createElement("input"), sw = document.createElement("span");
    const text = document.createElement("div");
    li.dataset.value = l.value; li.dataset.voxels = l.voxel_count;
    box.type = "checkbox"; box.checked = !ui.hidden.has(l.value);
    box.onchange = () => { box.checked ? ui.hidden.delete(l.value) : ui.hidden.add(l.value); redrawAll(); };
    sw.className = "swatch"; sw.style.background = `rgb(${colour(l.value).join(",")})`;
    const what = l.source === "trained" ? `→ ${l.trained_structures.join(" ∪ ")}` : "→ open vocabulary (own embedding)";
    const presence = l.present === null ? `${l.voxel_count} px/vox present in the mask (no presence head decides)`
      : l.present ? `present, ${l.voxel_count} px/vox` + (l.voxels_label_value !== l.value ? ` (label ${l.voxels_label_value})` : "")
      : `absent (${l.voxel_count} voxels)`;
    text.innerHTML = `<b></b> <span class="meta"></span><br><span class="meta presence"></span>`;
    text.querySelector("b").textContent = l.prompt;
    text.querySelector(".meta").textContent = `${what} · ${l.resolution}${l.corrected ? ` (read as “${l.corrected}”)` : ""}`;
    const p = text.querySelector(".presence");
    p.textContent = `${presence} · max p ${(+l.max_probability).toFixed(3)}` +
      (l.voxels_changed_by_edits ? ` · ${l.voxels_changed_by_edits} changed by edits` : "") +
      (l.editable ? "" : " · not editable by commands");
    if (l.present === false) p.classList.add("absent");
    li.append(box, sw, text); ul.appendChild(li);
  }
}

function renderLog(log) {
  const ol = $("edit-log");
  ol.innerHTML = "";
  for (const e of log) {
    const li = document.createElement("li");
    const changed = Object.entries(e.voxels_changed || {}).filter(([, n]) => n).map(([k, n]) => `${k} ${n}`).join(", ");
    const actions = (e.actions || []).map((a) => `${a.action} ${(a.structures || a.target || []).join("+")}${a.strength ? ` (${a.strength})` : ""}`).join("; ");
    li.textContent = `“${e.command}” → ${e.refused ? `refused: ${e.refused}` : actions || "no action"}` +
      (changed ? ` · changed: ${changed}` : "") + (e.undone ? " · undone" : "");
    if (e.undone) li.classList.add("undone");
    if (e.refused) li.classList.add("refused");
    ol.appendChild(li);
  }
}

// ---------------------------------------------------------------- actions
function casePath(action) { return `/api/cases/${encodeURIComponent(ui.case)}/${action}`; }

async function segment() {
  const prompts = $("prompt-input").value.split("\n").map((s) => s.trim()).filter((s) => s);
  await runJob(casePath("prompts"), { prompts, open_vocabulary: $("open-vocabulary").checked }, "segmenting");
}
async function command() {
  const text = $("command-input").value.trim();
  if (!text) { status("type a command first", true); return; }
  await runJob(casePath("command"), { command: text }, "command");
}
async function save() {
  const result = await runJob(casePath("save"), null, "saving");
  if (result) { ui.saved = true; setBusy(false); $("saved").textContent = `saved: ${Object.values(result.saved).join(", ")}`; }
}
async function download(kind) {
  try {
    const r = await api(casePath(`download/${kind}`));
    const name = (r.headers.get("content-disposition") || "").match(/filename="?([^";]+)"?/);
    const a = document.createElement("a");
    a.href = URL.createObjectURL(await r.blob()); a.download = name ? name[1] : kind;
    a.click(); setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  } catch (e) { status(e.message, true); }
}

window.addEventListener("DOMContentLoaded", () => {
  $("prompt-run").onclick = segment;
  $("command-run").onclick = command;
  $("command-input").onkeydown = (e) => { if (e.key === "Enter") command(); };
  $("undo").onclick = () => runJob(casePath("undo"), null, "undo");
  $("redo").onclick = () => runJob(casePath("redo"), null, "redo");
  $("save").onclick = save;
  document.querySelectorAll(".download").forEach((b) => { b.onclick = () => download(b.dataset.kind); });
  $("opacity").oninput = () => redrawAll();
  loadCases().catch((e) => status(e.message, true));
});
