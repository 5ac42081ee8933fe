// imagerank web page, the collection: the indexed images by label, a page at a time, before any query.
// A click on an image starts "more like this" with it (searchById in app.js).
"use strict";

const collection = { label: "", offset: 0, limit: 24, hasMore: false };

async function loadCollection() {
  const params = new URLSearchParams({ offset: collection.offset, limit: collection.limit });
  if (collection.label) params.set("label", collection.label);
  const status = document.querySelector("#collection-status");
  const section = document.querySelector("#collection");
  section.setAttribute("aria-busy", "true");
  let data;
  try {
    const response = await fetch(`/api/collection?${params}`);
    data = await response.json();
    if (!response.ok) throw new Error(data.detail || `${response.status} ${response.statusText}`);
  } catch (error) {
    status.textContent = `Could not list the collection (${error.message}).`;
    section.removeAttribute("aria-busy");
    return;
  }
  section.removeAttribute("aria-busy");
  document.querySelector("#collection-grid").replaceChildren(...data.images.map(collectionItem));
  collection.hasMore = data.has_more;
  const first = data.offset + 1;
  const last = data.offset + data.images.length;
  const where = collection.label ? ` labelled “${collection.label}”` : "";
  status.textContent = data.images.length
    ? `Images ${first}–${last} of ${data.total.toLocaleString()}${where}. Choose one to find more like it.`
    : `No images${where}.`;
  document.querySelector("#collection-prev").disabled = data.offset === 0;
  document.querySelector("#collection-next").disabled = !data.has_more;
}

function collectionItem(image) {
  const item = document.createElement("li");
  item.className = "collection-item";
  item.dataset.id = image.id;
  const button = document.createElement("button");
  button.type = "button";
  button.className = "more-like-this";
  button.setAttribute("aria-label", `More like this: ${image.path}`);
  button.title = `${image.path}: more like this`;
  const thumbnail = document.createElement("img");
  thumbnail.src = image.thumbnail_url;
  thumbnail.alt = "";
  thumbnail.loading = "lazy";
  thumbnail.width = 160;
  thumbnail.height = 160;
  const caption = document.createElement("span");
  caption.className = "collection-label";
  caption.textContent = image.label ?? "(no label)";
  button.append(thumbnail, caption);
  button.addEventListener("click", () => {
    searchById(image);
    document.querySelector("#results").scrollIntoView({ block: "start" });
  });
  item.append(button);
  return item;
}

async function loadCollectionLabels() {
  try {
    const stats = await (await fetch("/api/stats")).json();
    // Called again after labels change (labels.js): rebuilt, keeping the chosen label while it exists.
    const select = document.querySelector("#collection-label");
    const named = stats.labels.filter(({ label }) => label !== null);
    select.replaceChildren(select.options[0], ...named.map(({ label, count }) => new Option(`${label} (${count})`, label)));
    if (!named.some(({ label }) => label === collection.label)) collection.label = "";
    select.value = collection.label;
  } catch (error) {
    // the collection still lists every label together
  }
}

function wireCollection() {
  document.querySelector("#collection-label").addEventListener("change", (event) => {
    collection.label = event.target.value;
    collection.offset = 0;
    loadCollection();
  });
  document.querySelector("#collection-prev").addEventListener("click", () => {
    collection.offset = Math.max(0, collection.offset - collection.limit);
    loadCollection();
  });
  document.querySelector("#collection-next").addEventListener("click", () => {
    if (!collection.hasMore) return;
    collection.offset += collection.limit;
    loadCollection();
  });
}

wireCollection();
loadCollectionLabels();
loadCollection();
