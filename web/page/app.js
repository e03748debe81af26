// The page: tabs, the worked example's table, the playground's loop and drawings, the bench table.
// Every number shown comes from the WebAssembly module (the backprop library); this file only lays it out.
import init, { open_lab, defaults_json, setup_json } from './pkg/backprop_web.js';

const $ = (id) => document.getElementById(id);
// Matrices one row a line, so the table keeps its width; every digit shown is the value's own, rounded.
const fmt = (v, d = 8) => {
  if (v === null || v === undefined) return '–';
  if (!Array.isArray(v)) return v.toFixed(d);
  if (Array.isArray(v[0])) return `[${v.map((r) => fmt(r, d)).join(',\n ')}]`;
  return `[${v.map((x) => fmt(x, d)).join(', ')}]`;
};
const sci = (v) => (v === null || v === undefined ? '–' : v.toExponential(1));
const pct = (v) => (v === null || v === undefined ? '–' : `${(100 * v).toFixed(2)}%`);
const cell = (tr, text, cls) => { const td = tr.insertCell(); td.textContent = text; if (cls) td.className = cls; return td; };

// ---- tabs (arrow keys move between them, as the WAI-ARIA tabs pattern) ----
const tabs = [...document.querySelectorAll('[role="tab"]')];
function select(tab) {
  for (const t of tabs) {
    const on = t === tab;
    t.setAttribute('aria-selected', String(on));
    t.tabIndex = on ? 0 : -1;
    $(t.getAttribute('aria-controls')).hidden = !on;
  }
  tab.focus();
  history.replaceState(null, '', `${location.search}#${tab.id.slice(4)}`);
  if (tab.id === 'tab-playground') drawAll();
}
for (const t of tabs) {
  t.addEventListener('click', () => select(t));
  t.addEventListener('keydown', (e) => {
    const i = tabs.indexOf(t);
    const to = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (to !== undefined) { e.preventDefault(); select(tabs[(to + tabs.length) % tabs.length]); }
  });
}

let lab = null;
const noGpu = () => !lab || lab.adapter_json() === 'null';

// ---- worked example ----
async function workedExample() {
  const out = $('worked-example-json');
  try {
    const text = await lab.worked_example();
    const doc = JSON.parse(text);
    const body = $('worked-body');
    body.replaceChildren();
    for (const q of doc.quantities) {
      const tr = body.insertRow();
      cell(tr, q.name, 'name');
      const digits = q.seed === null ? 0 : Math.max(...[q.seed].flat(2).map((v) => (String(v).split('.')[1] || '').length));
      cell(tr, q.seed === null ? '–' : fmt(q.seed, digits));
      cell(tr, fmt(q.cpu_f64));
      cell(tr, fmt(q.gpu_f32));
      cell(tr, sci(q.max_abs_diff));
      const agrees = q.seed_agrees === null ? '–' : q.seed_agrees ? 'yes' : 'NO';
      cell(tr, agrees, q.seed_agrees === false ? 'bad' : '');
    }
    const printed = doc.quantities.filter((q) => q.seed !== null);
    const wrong = printed.filter((q) => q.seed_agrees === false).map((q) => q.name);
    let summary = `The seed prints ${printed.length} of these; ${wrong.length} disagree with the exact values within its own rounding.`;
    if (doc.adapter) {
      const worst = Math.max(...doc.quantities.map((q) => q.max_abs_diff));
      summary += ` Largest |GPU f32 − CPU f64| over all quantities: ${worst.toExponential(2)}.`;
    } else {
      summary += ' No GPU here: the reference alone (its GPU fields are null, as with --backend cpu).';
    }
    $('worked-summary').textContent = summary;
    out.textContent = text;
  } catch (e) {
    $('worked-body').replaceChildren();
    $('worked-summary').textContent = `The worked example failed: ${e}`;
    out.textContent = JSON.stringify({ error: String(e) });
  }
}

// ---- playground ----
const form = $('settings');
let session = null;
let running = false;
let history_ = { losses: [], points: null, field: null, last: null };

function formSettings() {
  const s = {};
  for (const el of form.elements) if (el.name) s[el.name] = el.value.trim();
  return s;
}
function fillForm(settings) {
  for (const [k, v] of Object.entries(settings)) if (form.elements[k]) form.elements[k].value = String(v);
}
function status(text) { $('play-status').textContent = text; }

function reset() {
  running = false;
  $('train').textContent = 'Train';
  history_ = { losses: [], points: null, field: null, last: null };
  for (const id of ['s-epoch', 's-train', 's-eval', 's-acc']) $(id).textContent = '–';
  $('verify-body').innerHTML = '<tr><td colspan="4" class="pending">press Verify</td></tr>';
  try {
    session = lab.playground(JSON.stringify(formSettings()));
    history_.points = JSON.parse(session.points_json());
    $('s-backend').textContent = session.backend() + (noGpu() ? ' — this browser has no WebGPU' : '');
    status('ready');
  } catch (e) {
    session = null;
    status(`cannot start: ${e}`);
  }
  drawAll();
  return session;
}

function show(r) {
  history_.losses.push(...r.losses);
  history_.last = r.eval ? r : { ...r, eval: history_.last?.eval ?? null };
  $('s-epoch').textContent = `${r.epoch} of ${form.elements.epochs.value}`;
  $('s-train').textContent = r.losses.at(-1).toExponential(4);
  if (!r.eval) return;
  $('s-eval-name').textContent = r.eval.held_out ? 'held-out loss' : 'loss (all 4 rows)';
  $('s-eval').textContent = r.eval.loss.toExponential(4);
  $('s-acc').textContent = r.eval.accuracy === null ? '– (regression)' : pct(r.eval.accuracy);
}

let fieldAt = -Infinity;
async function refreshField() {
  if (!session || history_.points.features > 2) return;
  history_.field = JSON.parse(await session.field(history_.points.features === 2 ? 64 : 200));
  fieldAt = performance.now();
}

// Trains in calls of about 100 ms each, drawing the curve after each and the network's output at most
// twice a second (and at the end); stops on Pause or when the run's epochs are done.
async function trainLoop() {
  let chunk = 1;
  for (;;) {
    const t0 = performance.now();
    const r = JSON.parse(await session.train(chunk, false));
    show(r);
    const ms = performance.now() - t0;
    chunk = Math.max(1, Math.min(256, Math.round(chunk * (ms < 60 ? 2 : ms > 200 ? 0.5 : 1))));
    if (r.done || !running || performance.now() - fieldAt > 500) await refreshField();
    drawAll();
    if (r.done || !running) return r;
  }
}

async function train() {
  if (running) { running = false; return; }
  if (!session && !reset()) return;
  if (history_.last && history_.last.done) { status('this run is done: Reset to train again'); return; }
  running = true;
  $('train').textContent = 'Pause';
  status('training…');
  try {
    const r = await trainLoop();
    status(r && r.done ? 'done' : 'paused');
    return r;
  } catch (e) {
    status(`stopped: ${e}`);
    throw e;
  } finally {
    running = false;
    $('train').textContent = 'Train';
  }
}

async function step() {
  if (running || (!session && !reset())) return;
  try {
    const r = JSON.parse(await session.train(1, true));
    show(r);
    await refreshField();
    drawAll();
    status(r.done ? 'done' : 'one epoch');
  } catch (e) { status(`stopped: ${e}`); }
}

async function verify() {
  if (running || (!session && !reset())) return;
  try {
    const r = JSON.parse(await session.verify());
    const body = $('verify-body');
    body.replaceChildren();
    for (const t of r.tensors) {
      const tr = body.insertRow();
      cell(tr, t.name, 'name');
      cell(tr, sci(t.max_abs));
      cell(tr, sci(t.max_rel));
      cell(tr, t.worst_ratio.toFixed(3), t.worst_ratio > 1 ? 'bad' : '');
    }
    status(`verify step ${r.step}: ${r.passed ? 'ok' : 'FAILED'} (tolerance ${r.atol} + ${r.rtol}·|ref|)`);
  } catch (e) { status(`verify failed: ${e}`); }
}

// ---- drawing ----
const COLORS = [[230, 110, 0], [31, 119, 180]];
const css = (c, a = 1) => `rgba(${c[0]},${c[1]},${c[2]},${a})`;

function drawField() {
  const cv = $('field');
  const g = cv.getContext('2d');
  g.clearRect(0, 0, cv.width, cv.height);
  const p = history_.points;
  const caption = $('field-caption');
  if (!p) { caption.textContent = '\u00a0'; return; }
  if (p.features > 2) {
    drawImages(g, cv, p.train);
    caption.textContent = `the first ${Math.min(36, p.train.length)} training images (8×8) and their classes: 64 inputs, no plane to draw`;
    return;
  }
  const f = history_.field;
  const all = [...p.train, ...(p.test || [])];
  const W = cv.width, H = cv.height;
  if (p.features === 2) {
    const xr = f ? f.x : extent(all.map((r) => r[0][0]));
    const yr = f ? f.y : extent(all.map((r) => r[0][1]));
    if (f) {
      const img = g.createImageData(f.n, f.n);
      f.values.forEach((v, i) => {
        const t = Math.min(1, Math.max(0, v));
        for (let c = 0; c < 3; c++) img.data[4 * i + c] = 255 - (255 - (COLORS[0][c] * (1 - t) + COLORS[1][c] * t)) * 0.45;
        img.data[4 * i + 3] = 255;
      });
      const tmp = new OffscreenCanvas(f.n, f.n);
      tmp.getContext('2d').putImageData(img, 0, 0);
      g.imageSmoothingEnabled = true;
      g.drawImage(tmp, 0, 0, W, H);
    }
    const px = (x) => ((x - xr[0]) / (xr[1] - xr[0])) * W;
    const py = (y) => H - ((y - yr[0]) / (yr[1] - yr[0])) * H;
    const dot = (r, hollow) => {
      const c = COLORS[Math.round(r[1]) ? 1 : 0];
      g.beginPath();
      g.arc(px(r[0][0]), py(r[0][1]), p.train.length < 10 ? 9 : 4, 0, 2 * Math.PI);
      g.lineWidth = 2;
      if (hollow) { g.strokeStyle = css(c); g.stroke(); } else { g.fillStyle = css(c); g.fill(); g.strokeStyle = '#fff'; g.stroke(); }
    };
    p.train.forEach((r) => dot(r, false));
    (p.test || []).forEach((r) => dot(r, true));
    caption.textContent = 'background: the network\u2019s output (probability of the blue class); dots: training rows, rings: held out';
  } else {
    const xr = f ? f.x : extent(all.map((r) => r[0][0]));
    const yr = [-1.3, 1.3];
    const px = (x) => ((x - xr[0]) / (xr[1] - xr[0])) * W;
    const py = (y) => H - ((y - yr[0]) / (yr[1] - yr[0])) * H;
    g.strokeStyle = '#ddd';
    g.beginPath(); g.moveTo(0, py(0)); g.lineTo(W, py(0)); g.stroke();
    g.fillStyle = css(COLORS[1], 0.6);
    all.forEach((r) => { g.beginPath(); g.arc(px(r[0][0]), py(r[1]), 3, 0, 2 * Math.PI); g.fill(); });
    if (f) {
      g.strokeStyle = css(COLORS[0]);
      g.lineWidth = 3;
      g.beginPath();
      f.values.forEach((v, i) => { const x = xr[0] + ((xr[1] - xr[0]) * i) / (f.n - 1); i ? g.lineTo(px(x), py(v)) : g.moveTo(px(x), py(v)); });
      g.stroke();
    }
    caption.textContent = 'dots: sin(x) samples; line: the network\u2019s fitted curve';
  }
}

// Training rows of 8x8 images (digits), six to a row, with the class in the corner.
function drawImages(g, cv, rows) {
  const side = Math.sqrt(rows[0][0].length);
  const cellPx = cv.width / 6;
  const scale = (cellPx - 8) / side;
  const max = Math.max(...rows.flatMap((r) => r[0]));
  rows.slice(0, 36).forEach((r, k) => {
    const [x0, y0] = [(k % 6) * cellPx + 4, Math.floor(k / 6) * cellPx + 4];
    r[0].forEach((v, i) => {
      const shade = Math.round(255 * (1 - v / (max || 1)));
      g.fillStyle = `rgb(${shade},${shade},${shade})`;
      g.fillRect(x0 + (i % side) * scale, y0 + Math.floor(i / side) * scale, Math.ceil(scale), Math.ceil(scale));
    });
    g.fillStyle = css(COLORS[1]);
    g.font = '14px system-ui, sans-serif';
    g.fillText(String(r[1]), x0 + 2, y0 + 14);
  });
}

function extent(v) { const lo = Math.min(...v), hi = Math.max(...v), pad = 0.1 * (hi - lo || 1); return [lo - pad, hi + pad]; }

function drawCurve() {
  const cv = $('curve');
  const g = cv.getContext('2d');
  const W = cv.width, H = cv.height, L = 56, B = 28;
  g.clearRect(0, 0, W, H);
  const ls = history_.losses.filter((v) => v > 0 && Number.isFinite(v));
  g.strokeStyle = '#999';
  g.strokeRect(L, 4, W - L - 8, H - B - 4);
  if (ls.length === 0) return;
  let lo = Math.floor(Math.log10(Math.min(...ls))), hi = Math.ceil(Math.log10(Math.max(...ls)));
  if (hi === lo) hi = lo + 1;
  const px = (i) => L + ((W - L - 8) * i) / Math.max(1, ls.length - 1);
  const py = (v) => 4 + ((hi - Math.log10(v)) / (hi - lo)) * (H - B - 4);
  g.fillStyle = '#444';
  g.font = '12px system-ui, sans-serif';
  for (let d = lo; d <= hi; d++) { g.fillText(`1e${d}`, 8, py(10 ** d) + 4); }
  g.fillText(`epoch ${ls.length}`, W - 80, H - 8);
  g.strokeStyle = css(COLORS[1]);
  g.lineWidth = 2;
  g.beginPath();
  ls.forEach((v, i) => (i ? g.lineTo(px(i), py(v)) : g.moveTo(px(i), py(v))));
  g.stroke();
}

function drawAll() { drawField(); drawCurve(); }

// ---- bench ----
async function bench() {
  const button = $('bench-run');
  button.disabled = true;
  const body = $('bench-body');
  body.replaceChildren();
  const ms = (r) => (r ? `${r.ms_per_step.toPrecision(3)} ms` : '–');
  // One configuration after the other, each row filled as its timings arrive.
  try {
    for (const name of ['seed', 'small', 'mnist']) {
      $('bench-status').textContent = `timing ${name}…`;
      const tr = body.insertRow();
      const gpu = noGpu() ? null : JSON.parse(await lab.bench(name, true));
      const cpu = JSON.parse(await lab.bench(name, false));
      cell(tr, name, 'name');
      cell(tr, cpu.sizes.join('-'));
      cell(tr, String(cpu.batch));
      cell(tr, gpu ? ms(gpu) : 'no WebGPU');
      const train = gpu && gpu.train_ms_per_step !== null;
      cell(tr, train ? `${gpu.train_ms_per_step.toPrecision(3)} ms (${gpu.train_group} a submit)` : gpu ? 'a step is over 0.15 s: not timed' : '–');
      cell(tr, ms(cpu));
      const best = gpu && (train ? gpu.train_ms_per_step : gpu.ms_per_step);
      cell(tr, gpu ? `${(cpu.ms_per_step / best).toPrecision(3)}×` : '–');
    }
    $('bench-status').textContent = 'done';
  } catch (e) {
    $('bench-status').textContent = `bench failed: ${e}`;
  } finally {
    button.disabled = false;
  }
}

// ---- start ----
// wgpu names a WebGPU adapter by its description, which browsers often leave empty; then the page asks the
// browser for the vendor and architecture it reports instead.
async function browserAdapterName() {
  try {
    const info = (await navigator.gpu.requestAdapter()).info;
    const parts = [info.vendor, info.architecture, info.device].filter(Boolean);
    if (parts.length) return `${parts.join(' ')} (vendor and architecture as the browser reports them)`;
  } catch {
    // fall through: no name to show
  }
  return '(the browser does not name it)';
}

async function main() {
  await init();
  lab = await open_lab();
  const adapter = JSON.parse(lab.adapter_json());
  const device = $('device');
  if (adapter) {
    device.textContent = `GPU: ${adapter.name || (await browserAdapterName())} (${adapter.backend}, ${adapter.device_type})`;
  } else {
    device.classList.add('warn');
    device.textContent = `This browser has no WebGPU (${lab.gpu_error()}), so everything here runs on the CPU reference compiled to WebAssembly instead, and is labelled so.`;
    $('worked-gpu-head').textContent = 'GPU f32 (none)';
    $('worked-where').textContent = 'Without WebGPU it runs only in the f64 reference compiled to WebAssembly.';
  }
  $('train').addEventListener('click', () => train().catch(() => {}));
  $('step').addEventListener('click', step);
  $('reset').addEventListener('click', reset);
  $('verify').addEventListener('click', verify);
  $('bench-run').addEventListener('click', bench);
  form.elements.dataset.addEventListener('change', () => { fillForm(JSON.parse(defaults_json(form.elements.dataset.value))); reset(); });
  form.addEventListener('change', (e) => { if (e.target.name !== 'dataset') reset(); });

  const pairs = [...new URLSearchParams(location.search)];
  let settings;
  try {
    settings = JSON.parse(pairs.length ? setup_json(JSON.stringify(pairs)) : defaults_json('spirals'));
  } catch (e) {
    settings = JSON.parse(defaults_json('spirals'));
    $('train-json').textContent = JSON.stringify({ error: String(e) });
    status(`bad query: ${e}`);
  }
  const autorun = settings.autorun;
  delete settings.autorun;
  fillForm(settings);
  const hash = location.hash.slice(1);
  if (autorun) select($('tab-playground'));
  else if (['worked', 'playground', 'bench'].includes(hash)) select($(`tab-${hash}`));

  const worked = workedExample();
  if (reset() && autorun) {
    try {
      const r = await train();
      $('train-json').textContent = session.summary_json(r.losses.at(-1), r.eval.accuracy);
    } catch (e) {
      $('train-json').textContent = JSON.stringify({ error: String(e) });
    }
  }
  await worked;
}

main().catch((e) => {
  $('device').textContent = `The page could not start: ${e}`;
  $('worked-example-json').textContent = JSON.stringify({ error: String(e) });
});
