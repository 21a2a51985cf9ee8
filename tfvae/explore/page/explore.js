// The latent space explorer's page: plain JavaScript, no build step.
//
// Page coordinates c [D] map to z = center + c @ basis (see /api/info); the
// plane shows c[0] (right) and c[1] (up), the sliders set c[2..D-1].
// Decode requests are coalesced: at most one is in flight, and a pointer
// move while one is pending replaces the waiting position (the latest wins).
"use strict";

const TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
               "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
const MANIFOLD_TILES = 16;
const PICK_RADIUS = 8;

const explorer = {
  info: null,
  points: {coordinates: [], labels: []},
  sliders: [],
  label: null,
  selection: [],          // indices of shift-clicked points (at most two)
  pointer: null,          // [a, b] under the pointer
  decodes: 0,             // images drawn under the pointer
  latencies: [],          // ms from a pointer move to its image drawn
  ready: false,
};
window.explorer = explorer;

const plane = document.getElementById("plane");
const manifold = document.getElementById("manifold");
const statusLine = document.getElementById("status");

function showError(text) { statusLine.textContent = text; }

async function failure(response) {
  const text = (await response.text()).trim();
  return new Error(`${response.status}: ${text}`);
}

// --------------------------------------------------------------------------
// Coordinates.

function toPixel(a, b) {
  const [x0, x1, y0, y1] = explorer.info.extent;
  return [(a - x0) / (x1 - x0) * plane.width,
          (y1 - b) / (y1 - y0) * plane.height];
}

function fromPixel(px, py) {
  const [x0, x1, y0, y1] = explorer.info.extent;
  return [x0 + px / plane.width * (x1 - x0),
          y1 - py / plane.height * (y1 - y0)];
}

function latent(a, b) {
  const {center, basis} = explorer.info;
  const c = [a, b, ...explorer.sliders];
  const z = center.slice();
  for (let k = 0; k < basis.length; k++) {
    if (c[k] === 0) continue;
    for (let i = 0; i < z.length; i++) z[i] += c[k] * basis[k][i];
  }
  return z.slice(0, explorer.info.latent_size);
}
explorer.toPixel = toPixel;
explorer.latent = latent;

function labelQuery() {
  return explorer.info.conditional ? `&label=${explorer.label}` : "";
}

// --------------------------------------------------------------------------
// Pictures.

async function drawPng(canvas, response) {
  if (!response.ok) throw await failure(response);
  const bitmap = await createImageBitmap(await response.blob());
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const context = canvas.getContext("2d");
  context.imageSmoothingEnabled = false;
  context.drawImage(bitmap, 0, 0);
  return bitmap;
}

// One request in flight; `waiting` holds the latest position asked for.
const decoder = {busy: false, waiting: null};

function requestDecode(a, b, since) {
  decoder.waiting = {z: latent(a, b), since};
  if (!decoder.busy) pumpDecode();
}

async function pumpDecode() {
  const job = decoder.waiting;
  if (!job) return;
  decoder.waiting = null;
  decoder.busy = true;
  const text = job.z.map(String).join(",");
  try {
    const response = await fetch(`/api/decode?z=${text}${labelQuery()}`);
    const canvas = document.getElementById("decoded");
    await drawPng(canvas, response);
    canvas.dataset.z = text;
    explorer.decodes += 1;
    explorer.latencies.push(performance.now() - job.since);
    document.getElementById("z").textContent =
        "z = [" + job.z.map(v => v.toFixed(3)).join(", ") + "]";
    showError("");
  } catch (e) {
    showError(e.message);
  } finally {
    decoder.busy = false;
    if (decoder.waiting) pumpDecode();
  }
}

const tiler = {busy: false, again: false};

async function drawManifold() {
  const on = document.getElementById("manifold-toggle").checked;
  const context = manifold.getContext("2d");
  if (!on) {
    context.clearRect(0, 0, manifold.width, manifold.height);
    return;
  }
  if (tiler.busy) { tiler.again = true; return; }
  tiler.busy = true;
  const n = MANIFOLD_TILES;
  const [x0, x1, y0, y1] = explorer.info.extent;
  const z = [];
  for (let row = 0; row < n; row++) {
    for (let col = 0; col < n; col++) {
      z.push(latent(x0 + (col + 0.5) / n * (x1 - x0),
                    y1 - (row + 0.5) / n * (y1 - y0)));
    }
  }
  const body = {z, columns: n};
  if (explorer.info.conditional) body.label = explorer.label;
  try {
    const response = await fetch("/api/decode", {
        method: "POST", headers: {"Content-Type": "application/json"},
        body: JSON.stringify(body)});
    if (!response.ok) throw await failure(response);
    const bitmap = await createImageBitmap(await response.blob());
    context.imageSmoothingEnabled = false;
    context.clearRect(0, 0, manifold.width, manifold.height);
    context.globalAlpha = 0.9;
    context.drawImage(bitmap, 0, 0, manifold.width, manifold.height);
    manifold.dataset.tiles = String(n);
  } catch (e) {
    showError(e.message);
  } finally {
    tiler.busy = false;
    if (tiler.again) { tiler.again = false; drawManifold(); }
  }
}

async function showExample(index) {
  document.getElementById("example-index").textContent = `#${index}`;
  try {
    await drawPng(document.getElementById("original"),
                  await fetch(`/api/example?index=${index}&what=original`));
    const canvas = document.getElementById("reconstruction");
    await drawPng(canvas,
                  await fetch(`/api/example?index=${index}&what=reconstruction`));
    canvas.dataset.index = String(index);
  } catch (e) {
    showError(e.message);
  }
}

async function showInterpolation(first, second) {
  document.getElementById("interpolation-ends").textContent =
      `#${first} to #${second}`;
  try {
    const canvas = document.getElementById("interpolation");
    await drawPng(canvas, await fetch(
        `/api/interpolate?a=${first}&b=${second}&steps=10${labelQuery()}`));
    canvas.dataset.ends = `${first},${second}`;
  } catch (e) {
    showError(e.message);
  }
}

// --------------------------------------------------------------------------
// The plane.

function drawPlane() {
  const context = plane.getContext("2d");
  context.clearRect(0, 0, plane.width, plane.height);
  const {coordinates, labels} = explorer.points;
  for (let i = 0; i < coordinates.length; i++) {
    const [px, py] = toPixel(coordinates[i][0], coordinates[i][1]);
    context.fillStyle = TAB10[labels[i] % 10];
    context.globalAlpha = 0.75;
    context.beginPath();
    context.arc(px, py, 2.5, 0, 2 * Math.PI);
    context.fill();
  }
  context.globalAlpha = 1;
  for (const index of explorer.selection) {
    const [px, py] = toPixel(...coordinates[index]);
    context.strokeStyle = "#000";
    context.lineWidth = 2;
    context.beginPath();
    context.arc(px, py, 6, 0, 2 * Math.PI);
    context.stroke();
  }
  if (explorer.pointer) {
    const [px, py] = toPixel(...explorer.pointer);
    context.strokeStyle = "rgba(0, 0, 0, 0.5)";
    context.lineWidth = 1;
    context.beginPath();
    context.moveTo(px - 8, py); context.lineTo(px + 8, py);
    context.moveTo(px, py - 8); context.lineTo(px, py + 8);
    context.stroke();
  }
}

function eventPixel(event) {
  const box = plane.getBoundingClientRect();
  return [(event.clientX - box.left) * plane.width / box.width,
          (event.clientY - box.top) * plane.height / box.height];
}

function nearestPoint(px, py) {
  let best = -1, bestDistance = PICK_RADIUS * PICK_RADIUS;
  const {coordinates} = explorer.points;
  for (let i = 0; i < coordinates.length; i++) {
    const [qx, qy] = toPixel(coordinates[i][0], coordinates[i][1]);
    const distance = (qx - px) ** 2 + (qy - py) ** 2;
    if (distance <= bestDistance) { best = i; bestDistance = distance; }
  }
  return best;
}

function onMove(event) {
  const since = performance.now();
  const [px, py] = eventPixel(event);
  explorer.pointer = fromPixel(px, py);
  drawPlane();
  requestDecode(...explorer.pointer, since);
}

function onClick(event) {
  const [px, py] = eventPixel(event);
  const index = nearestPoint(px, py);
  if (index < 0) return;
  if (event.shiftKey) {
    explorer.selection = [...explorer.selection, index].slice(-2);
    drawPlane();
    if (explorer.selection.length === 2) showInterpolation(...explorer.selection);
  } else {
    showExample(index);
  }
}

function redecode() {
  if (explorer.pointer) requestDecode(...explorer.pointer, performance.now());
  drawManifold();
}

function buildControls() {
  const info = explorer.info;
  document.getElementById("source").textContent =
      `${info.kind || "model"} from ${info.source}` +
      (info.data ? `; points: ${info.data}` : "; no data points (no encoder)");
  document.getElementById("axes").textContent =
      `right: ${info.axis_names[0]}` +
      (info.latent_size > 1 ? `, up: ${info.axis_names[1]}` : "") +
      (info.plane === "pca" ? " (principal plane of the posterior means)" : "");
  const sliders = document.getElementById("sliders");
  explorer.sliders = [];
  for (let k = 2; k < info.latent_size; k++) {
    explorer.sliders.push(0);
    const label = document.createElement("label");
    const input = document.createElement("input");
    const range = info.slider_ranges[k];
    Object.assign(input, {type: "range", min: -range, max: range,
                          step: range / 100, value: 0});
    input.dataset.k = String(k);
    const value = document.createElement("span");
    value.textContent = "0.00";
    input.addEventListener("input", () => {
      explorer.sliders[k - 2] = Number(input.value);
      value.textContent = Number(input.value).toFixed(2);
      redecode();
    });
    label.append(`${info.axis_names[k]} `, input, " ", value);
    sliders.append(label);
  }
  if (info.conditional) {
    const select = document.getElementById("class");
    info.class_names.forEach((name, i) => select.add(new Option(name, i)));
    explorer.label = 0;
    select.addEventListener("change", () => {
      explorer.label = Number(select.value);
      redecode();
    });
    document.getElementById("class-control").hidden = false;
  }
  document.getElementById("manifold-toggle")
      .addEventListener("change", drawManifold);
  const legend = document.getElementById("legend");
  if (info.has_data) {
    const names = info.class_names || [];
    const present = [...new Set(explorer.points.labels)].sort((a, b) => a - b);
    for (const c of present) {
      const item = document.createElement("span");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = TAB10[c % 10];
      item.append(swatch, names[c] !== undefined ? names[c] : String(c));
      legend.append(item);
    }
  }
}

async function start() {
  try {
    const info = await fetch("/api/info");
    if (!info.ok) throw await failure(info);
    explorer.info = await info.json();
    const points = await fetch("/api/points");
    if (!points.ok) throw await failure(points);
    explorer.points = await points.json();
  } catch (e) {
    showError(e.message);
    return;
  }
  buildControls();
  drawPlane();
  plane.addEventListener("pointermove", onMove);
  plane.addEventListener("click", onClick);
  explorer.ready = true;
}

start();
