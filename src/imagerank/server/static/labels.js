// imagerank web page, labels: save the images marked relevant (and the query, when it is an indexed image)
// under a label, new or existing, so that the learned ranking learns from them; then search again.
// Shown only when the server accepts writes (GET /api/stats says so); a key, if needed, is asked for by the
// fetch wrapper in app.js.
"use strict";

// The ids the "Save" button labels: the results marked relevant, and an indexed query image.
function labelTargets() {
  const ids = new Set(state.relevant);
  if (state.query?.kind === "id") ids.add(state.query.id);
  return [...ids];
}

// Called by loadStats (app.js) with whether the server accepts writes and the labels it has.
function showLabelSaving(writable, labels) {
  document.querySelector("#save-label").hidden = !writable;
  document.querySelector("#known-labels").replaceChildren(...labels.map((label) => new Option(label)));
  updateLabelSaving();
}

// Called whenever the marks or the query change (updateFeedbackSummary in app.js).
function updateLabelSaving() {
  const count = labelTargets().length;
  const button = document.querySelector("#save-label-button");
  button.disabled = count === 0;
  button.textContent = count ? `Save ${count} image${count === 1 ? "" : "s"}` : "Save";
}

async function saveLabel(event) {
  event.preventDefault();
  const label = document.querySelector("#label-name").value.trim();
  const ids = labelTargets();
  const status = document.querySelector("#label-status");
  if (!label || !ids.length) return;
  showError("");
  status.textContent = "Saving the label…";
  let response, data;
  try {
    response = await fetch("/api/labels", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ids, label }),
    });
    data = await response.json().catch(() => ({ detail: `${response.status} ${response.statusText}` }));
  } catch (error) {
    data = { detail: `The server did not answer (${error.message}).` };
  }
  if (!response || !response.ok) {
    status.textContent = "";
    showError(data.detail || "Saving the label failed.");
    return;
  }
  const already = data.unchanged.length ? ` (${data.unchanged.length} already had it)` : "";
  const learned = data.refitted.length ? " The ranking has learned it." : "";
  const saved = data.changed.length;
  status.textContent = `Saved ${saved} image${saved === 1 ? "" : "s"} as “${label}”${already}.${learned}`;
  await Promise.all([loadStats(), loadMethods(), loadCollectionLabels()]);
  loadCollection();
  search();
}

document.querySelector("#save-label").addEventListener("submit", saveLabel);
