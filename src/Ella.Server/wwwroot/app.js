// EllaSharp web page: talks to this server's /v1/jobs (Server-Sent Events for progress) with the OpenAI request fields,
// plus init_image / mask / strength (img2img and inpainting) and loras (from GET /sdapi/v1/loras).
'use strict';
const $ = id => document.getElementById(id);
const HISTORY_KEY = 'ella.history', SETTINGS_KEY = 'ella.settings', KEY_KEY = 'ella.apiKey', HISTORY_MAX = 40;
const fields = ['prompt', 'negative', 'mode', 'scheduler', 'steps', 'guidance', 'seed', 'width', 'height', 'batch'];
let running = null; // { ids: [...], controllers: [...] }
// img2img / inpainting: the init image (data URL, sent as it was loaded) and whether a mask was painted or uploaded.
const tool = { image: null, width: 0, height: 0, masked: false };

function apiKey() { return localStorage.getItem(KEY_KEY) || ''; }
function headers(json) {
  const h = {};
  if (json) h['Content-Type'] = 'application/json';
  if (apiKey()) h['Authorization'] = 'Bearer ' + apiKey();
  return h;
}

class ApiError extends Error {
  constructor(status, message, param, retryAfter) { super(message); this.status = status; this.param = param; this.retryAfter = retryAfter; }
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers(options.body !== undefined) });
  if (!response.ok) {
    let message = response.statusText, param = null;
    try { const e = (await response.json()).error; message = e.message; param = e.param; } catch { /* not JSON */ }
    throw new ApiError(response.status, message, param, response.headers.get('Retry-After'));
  }
  return response;
}

function showError(e) {
  const box = $('error');
  document.querySelectorAll('.invalid').forEach(el => el.classList.remove('invalid'));
  if (!e) { box.hidden = true; box.textContent = ''; return; }
  let text;
  if (e.status === 400 || e.status === 413) {
    text = `Invalid request: ${e.message}`;
    const input = { prompt: 'prompt', negative_prompt: 'negative', steps: 'steps', guidance_scale: 'guidance', seed: 'seed', size: 'width', n: 'batch', mode: 'mode', scheduler: 'scheduler',
      init_image: 'init-image', mask: 'mask-file', strength: 'strength', loras: 'lora' }[e.param];
    if (['init_image', 'mask', 'strength', 'loras'].includes(e.param)) $('tools').open = true;
    if (input) { $(input).classList.add('invalid'); if (e.param === 'size') $('height').classList.add('invalid'); }
  } else if (e.status === 401) {
    text = 'This server needs an API key (401): enter it below.';
    $('key-box').hidden = false;
  } else if (e.status === 429) {
    text = `The server is busy (429: queue full). Try again in ${e.retryAfter || 'a few'} s.`;
  } else if (e.status) {
    text = `Error ${e.status}: ${e.message}`;
  } else {
    text = String(e.message || e);
  }
  box.textContent = text;
  box.hidden = false;
}

function settings() {
  const seed = parseInt($('seed').value, 10);
  return {
    prompt: $('prompt').value, negative_prompt: $('negative').value, mode: $('mode').value, scheduler: $('scheduler').value,
    steps: parseInt($('steps').value, 10), guidance_scale: parseFloat($('guidance').value),
    seed: Number.isFinite(seed) ? seed : -1, size: `${$('width').value}x${$('height').value}`, n: parseInt($('batch').value, 10),
  };
}

// The fields of the image tools: sent with a job, never saved with the settings (images are large).
function toolFields() {
  const f = {};
  if (tool.image) {
    f.init_image = tool.image;
    if (tool.masked) f.mask = exportMask();
    const strength = parseFloat($('strength').value);
    if (Number.isFinite(strength)) f.strength = strength;
  }
  if ($('lora').value) f.loras = [{ name: $('lora').value, weight: parseFloat($('lora-weight').value) || 1 }];
  return f;
}

function readImage(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => {
      const img = new Image();
      img.onload = () => resolve({ img, url: reader.result });
      img.onerror = () => reject(new Error(`${file.name}: not an image this browser can read`));
      img.src = reader.result;
    };
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
}

async function loadInitImage(file) {
  try {
    const { img, url } = await readImage(file);
    tool.image = url; tool.width = img.naturalWidth; tool.height = img.naturalHeight;
    for (const id of ['init-canvas', 'mask-canvas']) { $(id).width = tool.width; $(id).height = tool.height; }
    $('init-canvas').getContext('2d').drawImage(img, 0, 0);
    clearMask();
    // The server generates at the image's size rounded down to a multiple of 8 unless told otherwise.
    $('width').value = Math.max(8, Math.floor(tool.width / 8) * 8); $('height').value = Math.max(8, Math.floor(tool.height / 8) * 8);
    $('canvas-box').hidden = false; $('init-clear').hidden = false;
    showError(null);
  } catch (e) { removeInitImage(); showError(e); }
}

function removeInitImage() {
  tool.image = null; tool.masked = false;
  $('init-image').value = ''; $('mask-file').value = '';
  $('canvas-box').hidden = true; $('init-clear').hidden = true;
}

function clearMask() {
  $('mask-canvas').getContext('2d').clearRect(0, 0, $('mask-canvas').width, $('mask-canvas').height);
  tool.masked = false; $('mask-file').value = '';
}

// Painted strokes are opaque (pink) on a transparent overlay; an uploaded mask is drawn the same way (its white = repaint).
function paintAt(event) {
  const canvas = $('mask-canvas'), rect = canvas.getBoundingClientRect();
  const x = (event.clientX - rect.left) * canvas.width / rect.width, y = (event.clientY - rect.top) * canvas.height / rect.height;
  const r = parseInt($('brush').value, 10) * canvas.width / 256;
  const ctx = canvas.getContext('2d');
  ctx.fillStyle = '#ff4f7b'; ctx.beginPath(); ctx.arc(x, y, Math.max(0.5, r), 0, 2 * Math.PI); ctx.fill();
  tool.masked = true;
}

async function loadMaskFile(file) {
  try {
    const { img } = await readImage(file);
    if (img.naturalWidth !== tool.width || img.naturalHeight !== tool.height)
      throw new Error(`the mask is ${img.naturalWidth}×${img.naturalHeight} but the image is ${tool.width}×${tool.height}; they must be the same size`);
    const canvas = $('mask-canvas'), ctx = canvas.getContext('2d');
    const scratch = document.createElement('canvas'); scratch.width = tool.width; scratch.height = tool.height;
    const sctx = scratch.getContext('2d'); sctx.drawImage(img, 0, 0);
    const data = sctx.getImageData(0, 0, tool.width, tool.height);
    for (let i = 0; i < data.data.length; i += 4) {
      const white = data.data[i] + data.data[i + 1] + data.data[i + 2] > 3 * 127;
      data.data[i] = 255; data.data[i + 1] = 79; data.data[i + 2] = 123; data.data[i + 3] = white ? 255 : 0;
    }
    ctx.putImageData(data, 0, 0);
    tool.masked = true;
    showError(null);
  } catch (e) { $('mask-file').value = ''; showError(e); }
}

// The mask as the server reads it: an opaque PNG, white where painted, black elsewhere.
function exportMask() {
  const src = $('mask-canvas');
  const out = document.createElement('canvas'); out.width = src.width; out.height = src.height;
  const painted = src.getContext('2d').getImageData(0, 0, src.width, src.height);
  for (let i = 0; i < painted.data.length; i += 4) {
    const v = painted.data[i + 3] >= 128 ? 255 : 0;
    painted.data[i] = painted.data[i + 1] = painted.data[i + 2] = v; painted.data[i + 3] = 255;
  }
  out.getContext('2d').putImageData(painted, 0, 0);
  return out.toDataURL('image/png');
}

function applySettings(s) {
  if (!s) return;
  const set = (id, v) => { if (v !== undefined && v !== null) $(id).value = v; };
  set('prompt', s.prompt); set('negative', s.negative_prompt); set('mode', s.mode); set('scheduler', s.scheduler);
  set('steps', s.steps); set('guidance', s.guidance_scale); set('seed', s.seed); set('batch', s.n);
  if (s.size) { const [w, h] = s.size.split('x'); set('width', w); set('height', h); }
}

function saveSettings() { localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings())); }

// Reads a text/event-stream with fetch (EventSource cannot send the Authorization header).
async function streamEvents(id, onEvent, signal) {
  const response = await api(`/v1/jobs/${id}/events`, { signal });
  const reader = response.body.getReader(), decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
      let type = 'message', data = '';
      for (const line of block.split('\n')) {
        if (line.startsWith('event: ')) type = line.slice(7);
        else if (line.startsWith('data: ')) data += line.slice(6);
      }
      if (!data) continue;
      const payload = JSON.parse(data);
      onEvent(type, payload);
      if (type === 'done' || type === 'error' || type === 'cancelled') { reader.cancel().catch(() => {}); return payload; }
    }
  }
}

function setRunning(on) {
  const button = $('generate');
  button.textContent = on ? 'Cancel' : 'Generate';
  button.classList.toggle('cancel', on);
  $('compare').disabled = on;
  if (!on) running = null;
}

// Runs one job; reports progress to the status line; resolves with the done payload, throws on error or cancel.
async function runJob(request, label, progress) {
  const job = await (await api('/v1/jobs', { method: 'POST', body: JSON.stringify({ ...request, response_format: 'b64_json' }) })).json();
  const controller = new AbortController();
  running.ids.push(job.id); running.controllers.push(controller);
  let result = null;
  try {
  await streamEvents(job.id, (type, e) => {
    if (type === 'queued') progress(label, e.position === 1 ? 'queued: next in line' : `queued: position ${e.position}`, 0);
    else if (type === 'started') progress(label, 'starting…', 0);
    else if (type === 'step') progress(label, `step ${e.step}/${e.total_steps} · ETA ${e.eta_seconds.toFixed(1)} s`, e.step / e.total_steps);
    else if (type === 'done') result = e;
    else if (type === 'error') throw new ApiError(e.status, e.error.message, e.error.param);
    else if (type === 'cancelled') throw new ApiError(0, 'cancelled');
  }, controller.signal);
  } finally { controller.abort(); }
  if (!result) throw new ApiError(0, 'the event stream ended early');
  return result;
}

function progressReporter(labels) {
  const state = {};
  return (label, text, fraction) => {
    state[label] = { text, fraction };
    const parts = Object.entries(state).map(([l, s]) => (l ? `${l}: ` : '') + s.text);
    $('status').textContent = parts.join(' · ');
    const values = Object.values(state);
    $('progress').value = values.reduce((a, s) => a + s.fraction, 0) / Math.max(labels, values.length);
  };
}

function entriesOf(result, request) {
  return result.data.map(d => ({
    id: `${result.id}-${Math.random().toString(36).slice(2, 8)}`, src: 'data:image/png;base64,' + d.b64_json,
    parameters: d.parameters, seed: d.seed, request: { ...request, seed: d.seed }, created: Date.now(),
  }));
}

async function generate() {
  showError(null); saveSettings();
  running = { ids: [], controllers: [] };
  setRunning(true);
  const request = settings();
  try {
    const result = await runJob({ ...request, ...toolFields() }, '', progressReporter(1));
    const entries = entriesOf(result, request);
    addToHistory(entries);
    $('status').textContent = `done · seed ${result.seed} · ${result.run_seconds.toFixed(1)} s`;
    $('progress').value = 1;
  } catch (e) {
    if (e.message === 'cancelled' || e.name === 'AbortError') { $('status').textContent = 'cancelled'; $('progress').value = 0; }
    else { showError(e); $('status').textContent = 'failed'; }
  } finally { setRunning(false); }
}

async function compare() {
  showError(null); saveSettings();
  running = { ids: [], controllers: [] };
  setRunning(true);
  const base = settings();
  if (base.seed < 0) base.seed = Math.floor(Math.random() * 2 ** 31);
  base.n = 1;
  $('compare-view').hidden = false;
  $('compare-seed').textContent = `seed ${base.seed}`;
  for (const slot of ['compare-ella', 'compare-clip']) $(slot).textContent = 'waiting…';
  const report = progressReporter(2);
  const one = async (mode, slot, label) => {
    const request = { ...base, mode };
    try {
      const result = await runJob({ ...request, ...toolFields() }, label, report);
      const [entry] = entriesOf(result, request);
      $(slot).replaceChildren(imageOf(entry));
      addToHistory([entry]);
    } catch (e) {
      $(slot).textContent = e.message === 'cancelled' ? 'cancelled' : `failed: ${e.message}`;
      if (e.message !== 'cancelled') showError(e);
    }
  };
  try { await Promise.all([one('ella', 'compare-ella', 'ELLA'), one('clip', 'compare-clip', 'CLIP')]); $('status').textContent = `compared on seed ${base.seed}`; }
  finally { setRunning(false); }
}

async function cancel() {
  if (!running) return;
  $('status').textContent = 'cancelling…';
  await Promise.all(running.ids.map(id => api(`/v1/jobs/${id}`, { method: 'DELETE' }).catch(() => {})));
}

function imageOf(entry) {
  const img = document.createElement('img');
  img.src = entry.src; img.alt = entry.request.prompt; img.title = 'Click to enlarge';
  img.addEventListener('click', () => { $('lightbox-img').src = entry.src; $('lightbox-params').textContent = entry.parameters; $('lightbox').hidden = false; });
  return img;
}

function loadHistory() { try { return JSON.parse(localStorage.getItem(HISTORY_KEY)) || []; } catch { return []; } }

function saveHistory(history) {
  // Data URLs are big: drop the oldest until the browser's storage accepts the list.
  while (history.length) {
    try { localStorage.setItem(HISTORY_KEY, JSON.stringify(history)); return; } catch { history.pop(); }
  }
  localStorage.removeItem(HISTORY_KEY);
}

function addToHistory(entries) {
  const history = [...entries, ...loadHistory()].slice(0, HISTORY_MAX);
  saveHistory(history);
  renderGallery(history);
}

function renderGallery(history) {
  const gallery = $('gallery');
  gallery.replaceChildren(...history.map(entry => {
    const card = document.createElement('div');
    card.className = 'card';
    card.dataset.id = entry.id;
    const meta = document.createElement('div');
    meta.className = 'meta';
    const prompt = document.createElement('div');
    prompt.className = 'prompt'; prompt.textContent = entry.request.prompt; prompt.title = entry.request.prompt;
    const info = document.createElement('div');
    info.className = 'muted'; info.textContent = `${entry.request.mode} · seed ${entry.seed} · ${entry.request.size}`;
    const buttons = document.createElement('div');
    buttons.className = 'buttons';
    const download = document.createElement('a');
    download.href = entry.src; download.download = `ella-${entry.seed}.png`; download.textContent = 'Download';
    const reuse = document.createElement('button');
    reuse.type = 'button'; reuse.textContent = 'Reuse settings'; reuse.className = 'reuse';
    reuse.addEventListener('click', () => { applySettings(entry.request); saveSettings(); window.scrollTo({ top: 0, behavior: 'smooth' }); });
    buttons.append(download, reuse);
    const details = document.createElement('details');
    const summary = document.createElement('summary'); summary.textContent = 'Parameters';
    const pre = document.createElement('pre'); pre.className = 'params'; pre.textContent = entry.parameters;
    details.append(summary, pre);
    meta.append(prompt, info, buttons, details);
    card.append(imageOf(entry), meta);
    return card;
  }));
}

async function loadModel() {
  try {
    const model = (await (await api('/v1/models')).json()).data[0];
    $('model').textContent = `${model.id}${model.ready ? '' : ' (loading…)'}`;
    const modes = new Set(model.modes);
    for (const option of $('mode').options) option.disabled = !modes.has(option.value);
    $('compare').disabled = !(modes.has('ella') && modes.has('clip'));
    $('compare').title = $('compare').disabled ? 'needs a model with both ELLA and CLIP' : $('compare').title;
    $('scheduler').replaceChildren(...model.schedulers.map(s => new Option(s, s)));
    const d = model.defaults;
    const saved = JSON.parse(localStorage.getItem(SETTINGS_KEY) || 'null');
    applySettings({ steps: d.steps, guidance_scale: d.guidance_scale, scheduler: d.scheduler, mode: d.mode, size: d.size, negative_prompt: d.negative_prompt });
    applySettings(saved);
    if (!modes.has($('mode').value)) $('mode').value = d.mode;
    const loras = await (await api('/sdapi/v1/loras')).json();
    $('lora').replaceChildren(new Option('none', ''), ...loras.map(l => new Option(l.name, l.name)));
    $('lora').disabled = loras.length === 0;
    $('lora').title = loras.length === 0 ? 'no LoRAs: start the server with --lora-dir' : '';
    showError(null);
  } catch (e) {
    $('model').textContent = 'not connected';
    showError(e);
  }
}

document.addEventListener('DOMContentLoaded', () => {
  $('form').addEventListener('submit', e => { e.preventDefault(); if (running) cancel(); else generate(); });
  $('compare').addEventListener('click', () => { if (!running) compare(); });
  $('dice').addEventListener('click', () => { $('seed').value = Math.floor(Math.random() * 2 ** 31); });
  $('lightbox').addEventListener('click', () => { $('lightbox').hidden = true; });
  $('clear').addEventListener('click', () => { localStorage.removeItem(HISTORY_KEY); renderGallery([]); });
  $('key-button').addEventListener('click', () => { $('key-box').hidden = !$('key-box').hidden; $('api-key').value = apiKey(); });
  $('key-save').addEventListener('click', () => { localStorage.setItem(KEY_KEY, $('api-key').value.trim()); $('key-box').hidden = true; loadModel(); });
  document.addEventListener('keydown', e => { if (e.key === 'Escape') $('lightbox').hidden = true; });
  $('init-image').addEventListener('change', e => { if (e.target.files[0]) loadInitImage(e.target.files[0]); });
  $('init-clear').addEventListener('click', removeInitImage);
  $('mask-file').addEventListener('change', e => { if (e.target.files[0]) loadMaskFile(e.target.files[0]); });
  $('mask-clear').addEventListener('click', clearMask);
  $('mask-canvas').addEventListener('pointerdown', e => { $('mask-canvas').setPointerCapture(e.pointerId); paintAt(e); });
  $('mask-canvas').addEventListener('pointermove', e => { if (e.buttons & 1) paintAt(e); });
  renderGallery(loadHistory());
  loadModel();
});
