// showme web app: small progressive enhancements. Every form also works without this script.
"use strict";
(function () {
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const post = (url, body, json) => fetch(url, {
    method: "POST", body, credentials: "same-origin",
    headers: Object.assign({"X-CSRF-Token": csrf, "Accept": "application/json"},
                           json ? {"Content-Type": "application/json"} : {}),
  });

  document.querySelectorAll("[data-autosubmit]").forEach((el) =>
    el.addEventListener("change", () => el.form.requestSubmit ? el.form.requestSubmit() : el.form.submit()));

  document.querySelectorAll("form[data-confirm]").forEach((form) =>
    form.addEventListener("submit", (event) => { if (!confirm(form.dataset.confirm)) event.preventDefault(); }));

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("[data-copy]");
    if (!button) return;
    const source = document.querySelector(button.dataset.copy);
    const text = source.value !== undefined ? source.value : source.textContent;
    try { await navigator.clipboard.writeText(text); } catch (err) {
      if (source.select) { source.select(); document.execCommand("copy"); }
    }
    const label = button.textContent;
    button.textContent = "Copied";
    setTimeout(() => { button.textContent = label; }, 1500);
  });

  // Favorite stars toggle in place.
  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-favorite]");
    if (!form) return;
    event.preventDefault();
    const response = await post(form.action, new FormData(form));
    if (!response.ok) return;
    const {favorite} = await response.json();
    const button = form.querySelector("button");
    button.setAttribute("aria-pressed", favorite ? "true" : "false");
    button.textContent = favorite ? "★" : "☆";
  });

  // Library: search as you type, filters and view without reloading.
  const filters = document.getElementById("filters");
  const results = document.getElementById("results");
  let pending = null;
  async function refresh() {
    const params = new URLSearchParams(new FormData(filters));
    for (const [key, value] of [...params]) if (value === "") params.delete(key);
    history.replaceState(null, "", "/app/library" + (params.toString() ? "?" + params : ""));
    params.set("partial", "1");
    const response = await fetch("/app/library?" + params, {credentials: "same-origin"});
    if (response.ok) results.innerHTML = await response.text();
  }
  if (filters && results) {
    filters.addEventListener("input", () => { clearTimeout(pending); pending = setTimeout(refresh, 200); });
    filters.addEventListener("change", () => { clearTimeout(pending); refresh(); });
    filters.addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  }

  // Library: drag and drop, several files at once, one request per file.
  const upload = document.getElementById("upload");
  if (upload) {
    const input = upload.querySelector('input[type="file"]');
    const status = document.getElementById("upload-status");
    const send = async (files) => {
      let done = 0; const failed = [];
      for (const file of files) {
        status.textContent = `Uploading ${done + 1} of ${files.length}: ${file.name}…`;
        const body = new FormData(upload);
        body.delete("file");
        body.append("file", file, file.name);
        const response = await post(upload.action, body);
        const answer = await response.json().catch(() => ({failed: [{file: file.name, error: "upload failed"}]}));
        done += (answer.uploaded || []).length;
        failed.push(...(answer.failed || []));
      }
      status.textContent = `${done} uploaded` + (failed.length ? `; ${failed.length} failed: ` +
        failed.map((f) => `${f.file} (${f.error})`).join(", ") : ".");
      input.value = "";
      if (filters && results) await refresh(); else location.reload();
    };
    upload.addEventListener("submit", (event) => { event.preventDefault(); if (input.files.length) send([...input.files]); });
    input.addEventListener("change", () => { if (input.files.length) send([...input.files]); });
    ["dragenter", "dragover"].forEach((type) => upload.addEventListener(type, (event) => {
      event.preventDefault(); upload.classList.add("over"); }));
    ["dragleave", "drop"].forEach((type) => upload.addEventListener(type, () => upload.classList.remove("over")));
    upload.addEventListener("drop", (event) => {
      event.preventDefault();
      const files = [...event.dataTransfer.files].filter((f) => f.type.startsWith("image/"));
      if (files.length) send(files);
    });
  }

  // Generate: the cost before, the result and the balance after (the job's gallery events).
  const generate = document.getElementById("generate");
  if (generate) {
    const $ = (id) => document.getElementById(id);
    const jobs = new Set();
    const cost = () => {
      const op = $("operation").selectedOptions[0];
      const model = $("model").selectedOptions[0];
      const editing = op.value !== "";
      $("model-field").hidden = editing;
      $("input-field").hidden = !(editing || (model && model.dataset.kind !== "image" && model.dataset.kind !== "video"));
      const count = editing || (model && model.dataset.kind === "video") ? 1 : Number($("num_outputs").value);
      const credits = (editing ? Number(op.dataset.credits) : Number(model.dataset.credits)) * count;
      $("cost").textContent = `${credits} credit${credits === 1 ? "" : "s"}`;
      const balance = Number($("balance").dataset.credits);
      $("cost").classList.toggle("error", credits > balance);
    };
    const balance = async () => {
      const response = await fetch("/app/api/balance", {credentials: "same-origin"});
      if (!response.ok) return;
      const data = await response.json();
      $("balance").dataset.credits = data.credits;
      $("balance").textContent = `${data.credits} credits`;
      cost();
    };
    ["change", "input"].forEach((type) => generate.addEventListener(type, cost));
    cost();
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const connect = () => {
      const socket = new WebSocket(`${scheme}//${location.host}/ws/calls/${encodeURIComponent(generate.dataset.conversation)}?token=${generate.dataset.token}`);
      socket.addEventListener("message", (message) => {
        const event = JSON.parse(message.data);
        if (!jobs.has(event.job_id)) return;
        if (event.type === "image_generated") {
          const item = document.createElement("li");
          item.className = "tile";
          const media = document.createElement(event.kind === "video" ? "video" : "img");
          media.src = event.url;
          if (event.kind === "video") { media.controls = true; media.setAttribute("aria-label", event.prompt); }
          else media.alt = event.prompt || "generated picture";
          item.appendChild(media);
          $("generated").prepend(item);
          $("no-results").hidden = true;
          $("generate-status").textContent = "Ready: it is in your library too.";
          balance();
        } else if (event.type === "generation_failed") {
          $("generate-status").textContent = `It failed, and nothing was charged: ${event.error.message}`;
          balance();
        }
      });
      socket.addEventListener("close", () => setTimeout(connect, 2000));
    };
    connect();
    generate.addEventListener("submit", async (event) => {
      event.preventDefault();
      const form = new FormData(generate);
      const body = {prompt: form.get("prompt") || "", aspect_ratio: form.get("aspect_ratio")};
      if (form.get("style")) body.style = form.get("style");
      if (form.get("operation")) { body.operation = form.get("operation"); }
      else { body.model = form.get("model"); body.num_outputs = Number(form.get("num_outputs")); }
      if (!$("input-field").hidden && form.get("input_asset_id")) body.input_asset_id = Number(form.get("input_asset_id"));
      $("generate-button").disabled = true;
      $("generate-status").textContent = "Starting…";
      try {
        const response = await post("/app/api/generate", JSON.stringify(body), true);
        const answer = await response.json();
        if (!response.ok) { $("generate-status").textContent = answer.error.message; return; }
        jobs.add(answer.job.id);
        $("generate-status").textContent = `Making it (${answer.job.cost} ${answer.job.unit}${answer.job.cost === 1 ? "" : "s"} held)…`;
        balance();
      } finally { $("generate-button").disabled = false; }
    });
  }
})();
