// pinid's page: send the pin to /api/identify and show the ranked users with their evidence;
// list the accounts that look alike (/api/links) with their most alike pins.
// Every string from the server is inserted as text, never as HTML.
"use strict";

const form = document.getElementById("pin-form");
const input = document.getElementById("image-input");
const zone = document.getElementById("drop-zone");
const preview = document.getElementById("preview");
const hint = document.getElementById("drop-hint");
const button = document.getElementById("identify");
const errorBox = document.getElementById("error");
const summary = document.getElementById("summary");
const verdict = document.getElementById("verdict");
const ranking = document.getElementById("ranking");

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showPreview() {
  if (preview.src) URL.revokeObjectURL(preview.src);
  const file = input.files[0];
  preview.hidden = !file;
  hint.hidden = Boolean(file);
  if (file) preview.src = URL.createObjectURL(file);
  else preview.removeAttribute("src");
}

let maxBodyBytes = null; // from /healthz: larger files are refused here, before sending

function megabytes(bytes) {
  return (bytes / 1048576).toFixed(1).replace(/\.0$/, "") + " MB";
}

function tooLarge(file) {
  if (!file || maxBodyBytes === null || file.size <= maxBodyBytes) return null;
  return "This image is " + megabytes(file.size) + "; the server accepts up to " +
    megabytes(maxBodyBytes) + ". Choose a smaller image.";
}

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = false;
}

function percent(p) {
  return p === null ? "not used" : (100 * p).toFixed(1) + "%";
}

function candidate(entry, rank, best) {
  const item = element("li", "candidate");
  const evidence = entry.evidence;
  if (evidence.image_url) {
    const img = element("img", "thumb");
    img.src = evidence.image_url;
    img.alt = "evidence pin " + evidence.pin_id;
    item.append(img);
  } else {
    item.append(element("div", "thumb no-thumb", "no image"));
  }
  const body = element("div");
  const title = element("div", "user");
  title.append(element("span", "rank", rank + "."), element("span", "name", entry.user));
  const bar = element("div", "bar");
  const fill = element("span");
  fill.style.width = (best > 0 ? (100 * entry.probability) / best : 0).toFixed(1) + "%";
  bar.append(fill);
  body.append(
    title,
    bar,
    element("div", "numbers",
      "probability " + percent(entry.probability) + " · text " + percent(entry.text_prob) +
      " · image " + percent(entry.image_prob) +
      " · evidence similarity " + evidence.similarity.toFixed(2)),
    element("div", "evidence-text", evidence.text ? "“" + evidence.text + "”" : "(no text)"),
  );
  item.append(body);
  return item;
}

function show(answer) {
  const best = answer.probability === null ? 0 : answer.probability;
  verdict.className = answer.user === "unknown" ? "unknown" : "";
  verdict.textContent = answer.user === "unknown"
    ? "Unknown user: none of the users this model knows is probable enough (best " +
      percent(best) + ", needs " + percent(answer.reject_below) + "). The closest candidates:"
    : "Posted by " + answer.user + " (probability " + percent(best) + ")";
  verdict.hidden = false;
  ranking.replaceChildren(...answer.candidates.map((e, i) => candidate(e, i + 1, best)));
  summary.textContent = "Used " + answer.used.join(" + ") +
    (answer.text_note ? " (" + answer.text_note + ")" : "") +
    " · " + answer.elapsed_ms.toFixed(0) + " ms";
  summary.hidden = false;
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  errorBox.hidden = true;
  const data = new FormData();
  if (input.files[0]) data.append("image", input.files[0]);
  const text = form.elements.text.value;
  if (text.trim()) data.append("text", text);
  if (!data.has("image") && !data.has("text")) {
    showError("Give an image, a text or both.");
    return;
  }
  const refusal = tooLarge(input.files[0]);
  if (refusal) {
    showError(refusal);
    return;
  }
  button.disabled = true;
  try {
    const response = await fetch("/api/identify", { method: "POST", body: data });
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(body.detail || "request failed (" + response.status + ")");
    show(body);
  } catch (error) {
    ranking.replaceChildren();
    summary.hidden = true;
    verdict.hidden = true;
    showError(error.message);
  } finally {
    button.disabled = false;
  }
});

document.getElementById("clear").addEventListener("click", () => {
  form.reset();
  showPreview();
  ranking.replaceChildren();
  summary.hidden = true;
  verdict.hidden = true;
  errorBox.hidden = true;
});

function fileChosen() {
  showPreview();
  errorBox.hidden = true;
  const refusal = tooLarge(input.files[0]);
  if (refusal) showError(refusal);
}

input.addEventListener("change", fileChosen);
for (const name of ["dragenter", "dragover"]) {
  zone.addEventListener(name, (event) => {
    event.preventDefault();
    zone.classList.add("dragging");
  });
}
for (const name of ["dragleave", "drop"]) {
  zone.addEventListener(name, () => zone.classList.remove("dragging"));
}
// A file dropped beside the zone must not make the browser leave the page to show it.
for (const name of ["dragover", "drop"]) {
  window.addEventListener(name, (event) => event.preventDefault());
}
zone.addEventListener("drop", (event) => {
  event.preventDefault();
  if (event.dataTransfer.files.length) {
    input.files = event.dataTransfer.files;
    fileChosen();
  }
});

fetch("/healthz")
  .then((response) => response.json())
  .then((health) => {
    document.getElementById("model-info").textContent =
      "Model " + health.model + ": " + health.users + " users, " +
      health.training_pins + " training pins.";
    maxBodyBytes = health.max_body_bytes;
    document.getElementById("size-limit").textContent = "up to " + megabytes(maxBodyBytes);
  })
  .catch(() => showError("The server does not answer."));

const LINKS_SHOWN = 10;
const linksStatus = document.getElementById("links-status");
const linkPairs = document.getElementById("link-pairs");

function linkedPin(pinId, account, text, url) {
  const figure = element("figure", "linked-pin");
  if (url) {
    const img = element("img", "thumb");
    img.src = url;
    img.alt = "pin " + pinId + " of " + account;
    figure.append(img);
  } else {
    figure.append(element("div", "thumb no-thumb", "no image"));
  }
  figure.append(element("figcaption", "evidence-text", text ? "“" + text + "”" : "(no text)"));
  return figure;
}

function linkPair(pair, rank) {
  const item = element("li", "link-pair");
  const [a, b] = pair.accounts;
  const title = element("h3", "user");
  title.append(element("span", "rank", rank + "."), element("span", "name", a),
    element("span", "and", " and "), element("span", "name", b));
  item.append(title, element("div", "numbers",
    "score " + percent(pair.score) + " (how likely one person runs both)"));
  const evidence = element("ul", "link-evidence");
  for (const pins of pair.evidence) {
    const row = element("li");
    row.append(
      linkedPin(pins.pins[0], a, pins.texts[0], pins.image_urls[0]),
      linkedPin(pins.pins[1], b, pins.texts[1], pins.image_urls[1]),
      element("div", "numbers", "alike in " + pins.view + " · similarity " +
        pins.similarity.toFixed(2)),
    );
    evidence.append(row);
  }
  if (!pair.evidence.length) evidence.append(element("li", "numbers", "no pins alike"));
  item.append(evidence);
  return item;
}

fetch("/api/links?top=" + LINKS_SHOWN)
  .then(async (response) => {
    const body = await response.json().catch(() => ({ detail: response.statusText }));
    if (!response.ok) throw new Error(body.detail || "request failed (" + response.status + ")");
    return body;
  })
  .then((links) => {
    linkPairs.replaceChildren(...links.pairs.map((pair, i) => linkPair(pair, i + 1)));
    linksStatus.textContent = links.pairs.length
      ? "The " + links.pairs.length + " pairs of accounts most likely to be one person, " +
        "each with its most alike pins:"
      : "The model knows too few accounts to compare.";
  })
  .catch((error) => {
    linksStatus.textContent = "Accounts that look alike could not be loaded: " + error.message;
  });
