"use strict";
// The page `zoo export --web` writes: an exported cmnist-zoo decoder run by onnxruntime-web, with nothing but static
// files. All it knows of the model comes from model.json (the ONNX file's metadata, which onnxruntime-web does not
// expose), so it serves any decoder the zoo exports, third-party variants included.
//
// For tests and the curious, window.zoo holds the state: zoo.state ("loading", "ready", "error"), zoo.error,
// zoo.images.{grid,moved,between} (the last decoded pixels in [0, 1], a plain array [n * H * W]), zoo.decodes
// (how many decodes of each finished), zoo.pending (decodes asked for and not yet done), zoo.backend and
// zoo.seededNormal.

const FORMAT = "cmnist-zoo-onnx/1";
const GRID_IMAGES = 16, GRID_COLUMNS = 4, STEPS = 10, SLIDERS = 4, SLIDER_RANGE = 3, SCALE = 2;

const zoo = window.zoo = {
  state: "loading", error: null, backend: null, model: null, pending: 0,
  images: {grid: null, moved: null, between: null}, decodes: {grid: 0, moved: 0, between: 0},
  seededNormal,
};

// The seeded latent draw, the twin of seeded_normal in exporters/runtime.py: element k (row-major) takes outputs 2k
// and 2k+1 of splitmix64 started at seed mod 2**64, and is sqrt(-2 log u1) cos(2 pi u2) in float64, then float32.
const MASK64 = (1n << 64n) - 1n;

function splitmix64(seed, counter) {
  let z = (seed + (counter + 1n) * 0x9E3779B97F4A7C15n) & MASK64;
  z = ((z ^ (z >> 30n)) * 0xBF58476D1CE4E5B9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94D049BB133111EBn) & MASK64;
  return z ^ (z >> 31n);
}

function seededNormal(n, d, seed) {
  const start = BigInt.asUintN(64, BigInt(seed));
  const out = new Float32Array(n * d);
  for (let k = 0; k < n * d; k++) {
    const u1 = (Number(splitmix64(start, BigInt(2 * k)) >> 11n) + 1) * 2 ** -53;
    const u2 = Number(splitmix64(start, BigInt(2 * k + 1)) >> 11n) * 2 ** -53;
    out[k] = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
  }
  return out;
}

const $ = (id) => document.getElementById(id);
let session = null, model = null, gridLatents = null, picked = 0;

function fail(text) {
  zoo.state = "error";
  zoo.error = text;
  document.body.dataset.state = "error";
  $("message").textContent = text;
  $("message").hidden = false;
  $("controls").hidden = true;
  $("model-info").textContent = "The decoder could not be loaded.";
}

window.addEventListener("error", (event) => fail(`Something went wrong: ${event.message}`));
window.addEventListener("unhandledrejection", (event) => fail(`Something went wrong: ${event.reason}`));

const REBUILD = "Write the bundle again with `zoo export RUN_DIR --web OUT_DIR`.";
const SERVE = "Open this page through a web server (e.g. `python -m http.server -d OUT_DIR`), not as a file.";

async function fetchOrFail(name, what) {
  let response;
  try {
    response = await fetch(name);
  } catch (error) {
    throw new Error(`could not fetch ${name} (${what}): ${error.message}. ${SERVE}`);
  }
  if (!response.ok) {
    throw new Error(`${name} (${what}) is missing from this bundle (HTTP ${response.status}). ${REBUILD}`);
  }
  return response;
}

function parseModel(meta) {
  if (meta.format !== FORMAT || meta.part !== "decoder") {
    throw new Error(`model.json does not describe a cmnist-zoo decoder (format ${meta.format}, part ${meta.part}). ` +
                    REBUILD);
  }
  const json = (key, fallback) => (key in meta ? JSON.parse(meta[key]) : fallback);
  const [channels, height, width] = json("image_shape");
  return {
    variant: meta.variant, precision: meta.precision, run: meta.run || "",
    latentDim: Number(meta.latent_dim), numClasses: Number(meta.num_classes),
    channels, height, width,
    codes: json("class_codes", []), characters: json("class_characters", []),
    prior: meta.prior || "none",
    priorMean: Float32Array.from(json("prior_mean", [])), priorStd: Float32Array.from(json("prior_std", [])),
    mixture: json("prior_mixture", null), priorDescription: meta.prior_description || "",
    output: meta.output || "image",
  };
}

// The twin of ClassMixture.draw in exporters/runtime.py: n latents of class index c for a seed. The noise is
// seededNormal's; the component comes from the same splitmix64 stream continued (output 2nd + i for image i), and
// the latent is the component's mean plus its Cholesky factor times the noise, summed in float64 in column order.
function mixtureLatents(n, seed, c) {
  const d = model.latentDim, noise = seededNormal(n, d, seed), start = BigInt.asUintN(64, BigInt(seed));
  const weights = model.mixture.weights[c], means = model.mixture.means[c], scales = model.mixture.scales[c];
  const out = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const u = Number(splitmix64(start, BigInt(2 * n * d + i)) >> 11n) * 2 ** -53;
    let running = 0, below = 0;
    for (const weight of weights) {
      running += weight;
      if (running <= u) below += 1;
    }
    const k = Math.min(below, weights.length - 1);
    for (let r = 0; r < d; r++) {
      let z = means[k][r];
      for (let j = 0; j < d; j++) z += scales[k][r][j] * noise[i * d + j];
      out[i * d + r] = z;
    }
  }
  return out;
}

// Per-latent mean and deviation of the mixture over all classes (equally weighted), for the sliders' ranges.
function mixtureMoments() {
  const d = model.latentDim, {weights, means, scales} = model.mixture, classes = weights.length;
  const mean = new Float64Array(d), square = new Float64Array(d);
  for (let c = 0; c < classes; c++) {
    weights[c].forEach((w, k) => {
      for (let r = 0; r < d; r++) {
        const variance = scales[c][k][r].reduce((sum, s) => sum + s * s, 0);
        mean[r] += (w * means[c][k][r]) / classes;
        square[r] += (w * (variance + means[c][k][r] ** 2)) / classes;
      }
    });
  }
  return [Float32Array.from(mean), Float32Array.from(square, (s, r) => Math.sqrt(Math.max(s - mean[r] ** 2, 0)))];
}

async function webgpuAdapter() {
  if (!navigator.gpu) return false;
  try {
    return Boolean(await navigator.gpu.requestAdapter());
  } catch {
    return false;
  }
}

async function openSession(bytes) {
  ort.env.wasm.wasmPaths = new URL("ort/", document.baseURI).href;
  // Threads need a cross-origin-isolated page (COOP/COEP headers); a plain static server gives one thread.
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  if (await webgpuAdapter()) {
    try {
      return [await ort.InferenceSession.create(bytes, {executionProviders: ["webgpu"]}), "WebGPU"];
    } catch {
      // Some WebGPU adapters lack what the graph needs: WebAssembly runs everything.
    }
  }
  return [await ort.InferenceSession.create(bytes, {executionProviders: ["wasm"]}), "WebAssembly"];
}

// The prior's latents for a seed, as Decoder.prior_latents draws them (float32 arithmetic throughout, but for a
// class mixture, which draws for the character chosen).
function priorLatents(n, seed) {
  if (model.prior === "class_mixture") return mixtureLatents(n, seed, Number($("character").value || 0));
  const d = model.latentDim, z = seededNormal(n, d, seed);
  if (model.prior === "fitted_gaussian") {
    for (let k = 0; k < z.length; k++) z[k] = model.priorMean[k % d] + Math.fround(model.priorStd[k % d] * z[k]);
  }
  return z;
}

let queue = Promise.resolve();

function enqueue(job) {  // one session.run at a time; a failure ends on the page's message
  zoo.pending += 1;
  queue = queue.then(job).catch((error) => fail(`Decoding failed: ${error.message || error}`))
    .finally(() => { zoo.pending -= 1; });
  return queue;
}

async function decode(what, latents, n) {
  const feeds = {latent: new ort.Tensor("float32", latents, [n, model.latentDim])};
  if (session.inputNames.includes("label")) {
    const label = BigInt($("character").value || 0);
    feeds.label = new ort.Tensor("int64", BigInt64Array.from({length: n}, () => label), [n]);
  }
  const started = performance.now();
  const outputs = await session.run(feeds);
  const ms = performance.now() - started;
  const pixels = outputs[model.output].data;
  zoo.images[what] = Array.from(pixels);
  zoo.decodes[what] += 1;
  $(`${what}-time`).textContent =
    `${n} image${n > 1 ? "s" : ""} decoded in ${ms.toFixed(1)} ms (${zoo.backend}).`;
  return pixels;
}

function paint(canvas, pixels, n, columns) {
  const {channels, height, width} = model, rows = Math.ceil(n / columns), plane = height * width;
  canvas.width = columns * width;
  canvas.height = rows * height;
  canvas.style.width = `${canvas.width * SCALE}px`;
  const context = canvas.getContext("2d"), picture = context.createImageData(canvas.width, canvas.height);
  for (let i = 0; i < n; i++) {
    const left = (i % columns) * width, top = Math.floor(i / columns) * height;
    for (let y = 0; y < height; y++) {
      for (let x = 0; x < width; x++) {
        const at = 4 * ((top + y) * canvas.width + left + x);
        for (let c = 0; c < 3; c++) {
          const value = pixels[(i * channels + Math.min(c, channels - 1)) * plane + y * width + x];
          picture.data[at + c] = Math.round(Math.min(Math.max(value, 0), 1) * 255);
        }
        picture.data[at + 3] = 255;
      }
    }
  }
  context.putImageData(picture, 0, 0);
}

function drawGrid() {
  return enqueue(async () => {
    const seed = Number($("seed").value);
    if (!Number.isSafeInteger(seed) || seed < 0) {
      $("grid-time").textContent = "The seed must be a whole number, 0 or more.";
      return;
    }
    gridLatents = priorLatents(GRID_IMAGES, seed);
    paint($("grid"), await decode("grid", gridLatents, GRID_IMAGES), GRID_IMAGES, GRID_COLUMNS);
    pick(Math.min(picked, GRID_IMAGES - 1));
  });
}

function pickedLatent() {
  const d = model.latentDim;
  return gridLatents.slice(picked * d, (picked + 1) * d);
}

function pick(index) {
  picked = index;
  pickedLatent().slice(0, SLIDERS).forEach((value, i) => {
    $(`slider-${i}`).value = value;
  });
  return drawMoved();
}

let movePending = false;

function drawMoved() {
  if (movePending) return queue;  // the queued decode will read the sliders' latest values
  movePending = true;
  return enqueue(async () => {
    movePending = false;
    const latent = pickedLatent();
    for (let i = 0; i < Math.min(SLIDERS, model.latentDim); i++) latent[i] = Number($(`slider-${i}`).value);
    paint($("moved"), await decode("moved", latent, 1), 1, 1);
  });
}

function drawBetween() {
  return enqueue(async () => {
    const d = model.latentDim, index = (id) => Math.min(Math.max(Math.round(Number($(id).value)), 1), GRID_IMAGES) - 1;
    const from = index("from"), to = index("to"), latents = new Float32Array(STEPS * d);
    for (let s = 0; s < STEPS; s++) {
      const t = s / (STEPS - 1);
      for (let j = 0; j < d; j++) {
        const a = gridLatents[from * d + j], b = gridLatents[to * d + j];
        latents[s * d + j] = a + t * (b - a);
      }
    }
    paint($("between"), await decode("between", latents, STEPS), STEPS, STEPS);
  });
}

function buildControls() {
  const select = $("character");
  if (model.numClasses > 0) {
    model.characters.forEach((character, index) => {
      select.add(new Option(`${character}  (code ${model.codes[index]})`, String(index)));
    });
  } else {
    $("character-field").hidden = true;
  }
  if (model.prior === "class_mixture") [model.priorMean, model.priorStd] = mixtureMoments();
  const sliders = $("sliders");
  for (let i = 0; i < Math.min(SLIDERS, model.latentDim); i++) {
    const label = document.createElement("label");
    label.textContent = `latent ${i + 1} `;
    // A fitted density's sliders span its own +-3 deviations.
    const fitted = model.prior === "fitted_gaussian" || model.prior === "class_mixture";
    const centre = fitted ? model.priorMean[i] : 0, spread = SLIDER_RANGE * (fitted ? model.priorStd[i] : 1);
    const slider = Object.assign(document.createElement("input"), {
      type: "range", id: `slider-${i}`, min: centre - spread, max: centre + spread, step: "any", value: centre,
    });
    slider.addEventListener("input", drawMoved);
    label.append(slider);
    sliders.append(label);
  }
  for (const id of ["from", "to"]) $(id).max = GRID_IMAGES;
  $("draw").addEventListener("click", drawGrid);
  $("character").addEventListener("change", drawGrid);
  $("new-samples").addEventListener("click", () => {
    $("seed").value = crypto.getRandomValues(new Uint32Array(1))[0];
    drawGrid();
  });
  $("interpolate").addEventListener("click", drawBetween);
  $("grid").addEventListener("click", (event) => {
    const box = event.target.getBoundingClientRect(), columns = GRID_COLUMNS;
    const column = Math.floor(((event.clientX - box.left) / box.width) * columns);
    const row = Math.floor(((event.clientY - box.top) / box.height) * Math.ceil(GRID_IMAGES / columns));
    pick(Math.min(row * columns + column, GRID_IMAGES - 1));
  });
}

async function start() {
  try {
    if (typeof ort === "undefined") {
      throw new Error(`onnxruntime-web (ort/ort.min.js) did not load. ${REBUILD}`);
    }
    model = zoo.model = parseModel(await (await fetchOrFail("model.json", "the decoder's metadata")).json());
    const bytes = new Uint8Array(await (await fetchOrFail("decoder.onnx", "the decoder")).arrayBuffer());
    try {
      [session, zoo.backend] = await openSession(bytes);
    } catch (error) {
      throw new Error(`decoder.onnx could not be loaded by onnxruntime-web: ${error.message || error}. ${REBUILD}`);
    }
  } catch (error) {
    fail(error.message);
    return;
  }
  if (!["standard_normal", "fitted_gaussian", "class_mixture"].includes(model.prior)) {
    fail(`The ${model.variant} model's prior (${model.prior}) is not one this page can draw latents from.`);
    return;
  }
  $("backend").textContent = zoo.backend;
  const classes = model.numClasses > 0 ? `, ${model.numClasses} characters` : "";
  const fitted = {
    fitted_gaussian: "; it has no prior, so latents come from a Gaussian fitted to its training codes",
    class_mixture: `; latents come from ${model.priorDescription || "a Gaussian mixture per character fitted to " +
                                          "its training codes"}, not from the N(0, I) prior`,
  }[model.prior] || "";
  $("model-info").textContent = `A ${model.variant} decoder (${model.precision}${model.run ? `, run ${model.run}` : ""})` +
                                `: latent size ${model.latentDim}${classes}${fitted}.`;
  buildControls();
  $("controls").hidden = false;
  await drawGrid();
  await drawBetween();
  if (zoo.state === "loading") {
    zoo.state = "ready";
    document.body.dataset.state = "ready";
  }
}

start();
