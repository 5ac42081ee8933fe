// imagerank web page: pick, drop or paste a query image, or type words; browse ranked results, refine with
// feedback.
"use strict";

const $ = (selector) => document.querySelector(selector);

// API key: asked for only when the server answers 401 (a server started with --protect-reads), kept for
// this tab. Every fetch sends it as a Bearer header; <img> requests cannot, so a same-site cookie carries it
// for them (the server accepts that cookie for reads only, never for writes).
const apiKey = {
  answers: 0, // how many times a key was entered in this page
  get: () => sessionStorage.getItem("imagerank-key") || "",
  set(key) {
    apiKey.answers += 1;
    sessionStorage.setItem("imagerank-key", key);
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `imagerank_key=${encodeURIComponent(key)}; path=/; SameSite=Strict${secure}`;
  },
};
const plainFetch = window.fetch.bind(window);
// The page starts several requests at once; those refused together share one prompt.
let asking = null;
function askForKey(status) {
  asking ??= Promise.resolve()
    .then(() => {
      const asked = window.prompt(
        status === 401 ? "This server needs an API key:" : "That API key was refused. API key:",
      );
      if (asked) apiKey.set(asked.trim());
      return Boolean(asked);
    })
    .finally(() => {
      asking = null;
    });
  return asking;
}
window.fetch = async (resource, options = {}) => {
  for (let attempt = 0; ; attempt++) {
    const sent = apiKey.get();
    const answersBefore = apiKey.answers;
    const headers = new Headers(options.headers || {});
    if (sent) headers.set("Authorization", `Bearer ${sent}`);
    const response = await plainFetch(resource, { ...options, headers });
    const refused = response.status === 401 || (response.status === 403 && sent);
    if (!refused || attempt >= 2) return response;
    if (apiKey.answers !== answersBefore) continue; // a key was entered meanwhile: try again with it
    if (!(await askForKey(response.status))) return response;
  }
};

const state = {
  query: null, // {kind: "upload", file, name}, {kind: "id", id, path} or {kind: "text", text}
  relevant: new Set(),
  notRelevant: new Set(),
  offset: 0,
  k: 24,
  label: "",
  method: "",
  hasMore: false,
  requestNumber: 0,
};

function searchRequest() {
  const options = {
    k: state.k,
    offset: state.offset,
    labels: state.label ? [state.label] : [],
    ...(state.method ? { method: state.method } : {}),
    relevant: [...state.relevant],
    not_relevant: [...state.notRelevant],
  };
  const json = { "Content-Type": "application/json" };
  if (state.query.kind === "id") {
    return { body: JSON.stringify({ id: state.query.id, ...options }), headers: json };
  }
  if (state.query.kind === "text") {
    // Words rank with the index's text ranker (no ranking method); feedback refines its scores.
    const { method, ...withoutMethod } = options;
    return { body: JSON.stringify({ text: state.query.text, ...withoutMethod }), headers: json };
  }
  const form = new FormData();
  form.append("image", state.query.file, state.query.name);
  for (const [name, value] of Object.entries(options)) {
    for (const item of Array.isArray(value) ? value : [value]) form.append(name, String(item));
  }
  return { body: form, headers: {} };
}

async function search() {
  if (!state.query) return;
  const number = ++state.requestNumber;
  showError("");
  setStatus("Searching…");
  $("#results").setAttribute("aria-busy", "true");
  let response, data;
  try {
    response = await fetch("/api/search", { method: "POST", ...searchRequest() });
    data = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  } catch (error) {
    data = { detail: `The server did not answer (${error.message}).` };
  }
  if (number !== state.requestNumber) return; // a newer search has started meanwhile
  $("#results").removeAttribute("aria-busy");
  if (!response || !response.ok) {
    showError(data.detail || "Search failed.");
    setStatus("");
    return;
  }
  render(data);
}

function render(data) {
  const focused = focusedControl();
  const grid = $("#grid");
  grid.replaceChildren(...data.results.map(card));
  state.hasMore = data.has_more;
  const first = data.offset + 1;
  const last = data.offset + data.results.length;
  $("#page-label").textContent = data.results.length ? `Results ${first}–${last}` : "";
  $("#prev-page").disabled = data.offset === 0;
  $("#next-page").disabled = !data.has_more;
  const where = state.label ? ` labelled “${state.label}”` : "";
  const ranked = data.query.kind === "text"
    ? ` matching “${data.query.text}”`
    : ` ranked by ${data.method}${data.note ? ` (${data.note})` : ""}`;
  setStatus(
    data.results.length
      ? `Showing results ${first}–${last}${where}${ranked} (${Math.round(data.timing.total_ms)} ms).`
      : `No results${where}.`,
  );
  restoreFocus(focused);
}

// Re-rendering replaces the cards; remember which card's button had focus to give it back.
function focusedControl() {
  const active = document.activeElement;
  const item = active?.closest?.("#grid .card");
  return item ? { id: item.dataset.id, className: active.classList[active.classList.length - 1] } : null;
}

function restoreFocus(focused) {
  const again = focused && $(`#grid .card[data-id="${focused.id}"] .${focused.className}`);
  if (again) again.focus({ preventScroll: true });
  else if (focused || document.activeElement === document.body) $("#results").focus();
}

function card(result) {
  const item = $("#card-template").content.firstElementChild.cloneNode(true);
  item.dataset.id = result.id;
  item.dataset.label = result.label ?? "";
  const more = item.querySelector(".more-like-this");
  more.setAttribute("aria-label", `More like this: ${result.path}`);
  const image = item.querySelector("img");
  image.src = result.thumbnail_url;
  image.width = 256;
  image.height = 256;
  item.querySelector(".card-label").textContent = result.label ?? "(no label)";
  item.querySelector(".card-label").title = result.path;
  if (result.path.startsWith("uploads://")) item.querySelector(".card-label").textContent += " · uploaded";
  item.querySelector(".card-score").textContent = result.score.toFixed(3);
  item.querySelector(".card-score").title = `score, rank ${result.rank}`;
  item.querySelector(".feedback").setAttribute("aria-label", `Feedback on ${result.path}`);
  const relevant = item.querySelector(".relevant");
  const notRelevant = item.querySelector(".not-relevant");
  relevant.setAttribute("aria-pressed", String(state.relevant.has(result.id)));
  item.classList.toggle("is-relevant", state.relevant.has(result.id));
  more.addEventListener("click", () => searchById(result));
  relevant.addEventListener("click", () => toggleFeedback(result.id, state.relevant, state.notRelevant));
  notRelevant.addEventListener("click", () => toggleFeedback(result.id, state.notRelevant, state.relevant));
  return item;
}

function toggleFeedback(id, set, opposite) {
  if (set.has(id)) set.delete(id);
  else set.add(id);
  opposite.delete(id);
  updateFeedbackSummary();
  search();
}

function updateFeedbackSummary() {
  const relevant = state.relevant.size;
  const notRelevant = state.notRelevant.size;
  $("#feedback-summary").textContent =
    relevant || notRelevant
      ? `Feedback: ${relevant} relevant, ${notRelevant} not relevant (hidden).`
      : "No feedback yet: mark results as relevant or not.";
  $("#clear-feedback").disabled = !(relevant || notRelevant);
  updateLabelSaving();
}

function resetForNewQuery() {
  state.relevant.clear();
  state.notRelevant.clear();
  state.offset = 0;
  updateFeedbackSummary();
}

function searchByFile(file) {
  if (!file) return;
  if (file.type && !file.type.startsWith("image/")) {
    showError(`${file.name || "That file"} is not an image.`);
    return;
  }
  state.query = { kind: "upload", file, name: file.name || "pasted image" };
  showQuery(URL.createObjectURL(file), `Query: ${state.query.name}`);
  resetForNewQuery();
  search();
}

function searchById(result) {
  state.query = { kind: "id", id: result.id, path: result.path };
  showQuery(result.thumbnail_url, `More like ${result.path}${result.label ? ` (${result.label})` : ""}`);
  resetForNewQuery();
  search();
}

function searchByText(text) {
  const words = text.trim();
  if (!words) {
    showError("Type a few words to search for, for example “a dog on a sofa”.");
    return;
  }
  state.query = { kind: "text", text: words };
  showQuery(null, `Words: “${words}”`);
  resetForNewQuery();
  search();
}

function showQuery(url, caption) {
  const image = $("#query-image");
  if (image.src.startsWith("blob:")) URL.revokeObjectURL(image.src);
  image.hidden = !url;
  if (url) image.src = url;
  else image.removeAttribute("src");
  $("#query-caption").textContent = caption;
  $("#query-preview").hidden = false;
}

function setStatus(text) {
  $("#status").textContent = text;
}

function showError(text) {
  const error = $("#error");
  error.textContent = text;
  error.hidden = !text;
}

async function loadStats() {
  try {
    const response = await fetch("/api/stats");
    const stats = await response.json();
    const uploads = stats.uploads ? ` (${stats.uploads.toLocaleString()} uploaded)` : "";
    $("#stats").textContent = `${stats.count.toLocaleString()} images${uploads} indexed with ${stats.model}.`;
    // Called again after labels change (labels.js): the menu is rebuilt, keeping the chosen label.
    const select = $("#label-filter");
    const named = stats.labels.filter(({ label }) => label !== null);
    select.replaceChildren(select.options[0], ...named.map(({ label, count }) => new Option(`${label} (${count})`, label)));
    state.label = named.some(({ label }) => label === state.label) ? state.label : "";
    select.value = state.label;
    showLabelSaving(stats.writable, named.map(({ label }) => label));
  } catch (error) {
    $("#stats").textContent = "Could not read the index statistics.";
  }
}

// The ranking menu: the index's default method first, then the other suggested ones.
async function loadMethods() {
  const select = $("#method");
  try {
    const response = await fetch("/api/methods");
    const methods = await response.json();
    // Called again after labels change (labels.js): the menu is rebuilt, keeping the chosen method.
    const chosen = state.method || methods.default;
    select.replaceChildren(
      ...methods.suggested.map((name) => new Option(name === methods.default ? `${name} (default)` : name, name)),
    );
    select.value = methods.suggested.includes(chosen) ? chosen : methods.default;
    state.method = select.value;
    $("#method-help").textContent = methods.labels >= 2
      ? `Learned methods use ${methods.labelled_images.toLocaleString()} labelled images (${methods.labels} labels).`
      : "No label folders: learned methods fall back to one that needs no labels.";
  } catch (error) {
    select.append(new Option("cosine", "cosine"));
    state.method = "cosine";
  }
}

function wireDropAndPaste() {
  const zone = $("#drop-zone");
  const isFileDrag = (event) => [...(event.dataTransfer?.types ?? [])].includes("Files");
  document.addEventListener("dragover", (event) => {
    if (!isFileDrag(event)) return;
    event.preventDefault();
    zone.classList.add("dragging");
  });
  document.addEventListener("dragleave", (event) => {
    if (event.relatedTarget === null) zone.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!isFileDrag(event)) return;
    event.preventDefault();
    zone.classList.remove("dragging");
    searchByFile(event.dataTransfer.files[0]);
  });
  document.addEventListener("paste", (event) => {
    const file = [...(event.clipboardData?.files ?? [])].find((item) => item.type.startsWith("image/"));
    if (file) {
      event.preventDefault();
      searchByFile(file);
    }
  });
}

function wireControls() {
  $("#text-search").addEventListener("submit", (event) => {
    event.preventDefault();
    searchByText($("#text-query").value);
  });
  $("#file-input").addEventListener("change", (event) => {
    searchByFile(event.target.files[0]);
    event.target.value = ""; // choosing the same file again searches again
  });
  $("#label-filter").addEventListener("change", (event) => {
    state.label = event.target.value;
    state.offset = 0;
    search();
  });
  $("#method").addEventListener("change", (event) => {
    state.method = event.target.value;
    state.offset = 0;
    search();
  });
  $("#page-size").addEventListener("change", (event) => {
    state.k = Number(event.target.value);
    state.offset = 0;
    search();
  });
  $("#clear-feedback").addEventListener("click", () => {
    state.relevant.clear();
    state.notRelevant.clear();
    updateFeedbackSummary();
    search();
  });
  $("#prev-page").addEventListener("click", () => {
    state.offset = Math.max(0, state.offset - state.k);
    search();
  });
  $("#next-page").addEventListener("click", () => {
    if (!state.hasMore) return;
    state.offset += state.k;
    search();
  });
}

state.k = Number($("#page-size").value);
wireControls();
wireDropAndPaste();
loadStats();
loadMethods();
