// rankfunnel search playground: plain JavaScript, no build step, talks only to the server that served it.
// Fields of /v1/search answers are read defensively: the response may gain fields, and old servers lack some.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const KEY_STORE = "rankfunnel.apiKey"; // sessionStorage: the key lives as long as this tab
  let running = null; // AbortController of the search in flight

  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  const isNum = (x) => typeof x === "number" && Number.isFinite(x);
  const fmt = (x, digits = 3) => (isNum(x) ? x.toFixed(digits) : "–");
  const msText = (x) => (isNum(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) + " ms" : "–");

  function apiHeaders(accept) {
    const h = { "Content-Type": "application/json", Accept: accept };
    const key = $("api_key").value.trim();
    if (key) h.Authorization = "Bearer " + key;
    return h;
  }

  // -- server status (GET readyz is public) --
  async function checkServer(attempt = 0) {
    const box = $("server");
    try {
      const resp = await fetch("readyz", { headers: { Accept: "application/json" } });
      const body = await resp.json().catch(() => ({}));
      if (resp.status === 503 && attempt < 60) {
        box.textContent = "server starting (models loading)…";
        box.dataset.state = "starting";
        setTimeout(() => checkServer(attempt + 1), 1000);
        return;
      }
      if (!resp.ok) throw new Error("HTTP " + resp.status);
      const rerankers = Array.isArray(body.rerankers) && body.rerankers.length ? body.rerankers.join(" → ") : "none";
      box.textContent = `ready · reranker: ${rerankers} · index: ${body.index ? "yes" : "no (rerank-only server)"}`;
      box.dataset.state = body.index ? "ready" : "warn";
    } catch (err) {
      box.textContent = "server unreachable (" + err.message + ")";
      box.dataset.state = "down";
    }
  }

  // -- errors --
  function showError(title, detail, name) {
    const box = $("error");
    box.replaceChildren(el("strong", null, title), el("span", null, " " + (detail || "")));
    if (name) box.append(el("code", null, name));
    box.hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error").replaceChildren();
  }

  async function errorOf(resp) {
    const text = await resp.text();
    try {
      const body = JSON.parse(text);
      const detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail ?? body);
      return { detail, name: body.error || "" };
    } catch {
      return { detail: text.slice(0, 500) || resp.statusText, name: "" };
    }
  }

  // -- rendering --
  function setColumn(kind, state, note) {
    $("col-" + kind).dataset.state = state;
    $(kind + "-note").textContent = note || "";
  }

  function snippet(hit) {
    const text = typeof hit.text === "string" ? hit.text : "";
    return text.length > 180 ? text.slice(0, 177) + "…" : text;
  }

  function moveBadge(hit) {
    const from = hit.stage1_rank;
    const to = hit.rank;
    if (!isNum(from) || !isNum(to)) return el("span", "move", "");
    const d = from - to;
    const badge = d > 0 ? el("span", "move up", "▲" + d) : d < 0 ? el("span", "move down", "▼" + -d) : el("span", "move same", "=");
    badge.title = `stage-1 rank ${from} → rank ${to}`;
    return badge;
  }

  function scoreChip(label, value, title) {
    const chip = el("span", "score");
    chip.append(el("span", "label", label), el("span", "value", fmt(value)));
    if (title) chip.title = title;
    return chip;
  }

  function hitItem(hit, kind) {
    const li = el("li", "hit");
    li.dataset.id = String(hit.id);
    const rank = kind === "stage1" ? hit.stage1_rank : hit.rank;
    const head = el("div", "hit-head");
    head.append(el("span", "rank", isNum(rank) ? rank : "?"));
    if (kind === "reranked") head.append(moveBadge(hit));
    const title = el("span", "title", hit.title || hit.id);
    head.append(title, el("span", "id", hit.id));
    li.append(head);
    const text = snippet(hit);
    if (text) li.append(el("p", "text", text));
    const scores = el("div", "scores");
    if (kind === "stage1") {
      scores.append(scoreChip("stage 1", hit.stage1_score, "retriever score"));
    } else {
      if (isNum(hit.rerank_score)) {
        scores.append(
          scoreChip("raw", hit.rerank_score, "reranker logit"),
          scoreChip("cal.", hit.score, "calibrated score (0-1)"),
        );
      } else {
        scores.append(scoreChip("score", hit.score, "final score (not reranked)"));
      }
      scores.append(scoreChip("stage 1", hit.stage1_score, "retriever score"));
    }
    li.append(scores);
    return li;
  }

  function fillList(kind, hits) {
    const list = $(kind + "-hits");
    list.replaceChildren(...hits.map((h) => hitItem(h, kind)));
  }

  const hitsOf = (result) => (Array.isArray(result && result.hits) ? result.hits : []);

  function renderStage1(result, fromFinal) {
    let hits = hitsOf(result);
    fromFinal = fromFinal && Boolean(result.reranked);
    if (fromFinal) hits = [...hits].sort((a, b) => (a.stage1_rank ?? 0) - (b.stage1_rank ?? 0));
    fillList("stage1", hits);
    $("stage1-meta").textContent = result.retriever ? "· " + result.retriever : "";
    const note = fromFinal
      ? "A blocking answer holds only the final hits: here in stage-1 order (gaps in the ranks are stage-1 " +
        "hits pushed out of the top-n). Tick two-phase to see the whole stage-1 list."
      : `${hits.length} hit${hits.length === 1 ? "" : "s"} from ${result.retriever || "the retriever"}`;
    setColumn("stage1", "filled", hits.length ? note : "Stage 1 found nothing.");
  }

  function renderFinal(result) {
    const hits = hitsOf(result);
    $("reranked-meta").textContent = result.reranker ? "· " + result.reranker : "";
    if (result.reranked) {
      fillList("reranked", hits);
      const note = result.reason ? "Note: " + result.reason : `${hits.length} hits reordered by ${result.reranker || "the reranker"}`;
      setColumn("reranked", "filled", note);
    } else {
      fillList("reranked", []);
      setColumn("reranked", "skipped", "Stage 2 did not rerank: " + (result.reason || "no reason given") +
        ". The answer is the stage-1 list.");
    }
  }

  function renderSummary(result, browser, onlyKeys) {
    $("summary").hidden = false;
    const verdict = $("verdict");
    if (result.reranked) {
      verdict.textContent = "Reranked by " + (result.reranker || "the reranker");
      verdict.dataset.state = "ok";
    } else {
      verdict.textContent = "Not reranked" + (result.reason ? ": " + result.reason : "");
      verdict.dataset.state = "warn";
    }
    const chips = [];
    const timings = result.timings_ms && typeof result.timings_ms === "object" ? result.timings_ms : {};
    for (const [key, value] of Object.entries(timings)) {
      if (!isNum(value) || (onlyKeys && !onlyKeys.includes(key))) continue;
      const label = key.replace(/_ms$/, "").replace(/_/g, " ").replace(/^stage(\d)/, "stage $1");
      chips.push([label, key.endsWith("_ms") ? msText(value) : String(value), "srv"]);
    }
    for (const [label, value] of browser) chips.push([label, msText(value), "web"]);
    $("timings").replaceChildren(
      ...chips.map(([label, value, where]) => {
        const chip = el("span", "timing " + where);
        chip.append(el("span", "label", label), el("span", "value", value));
        chip.title = where === "srv" ? "measured by the server" : "measured in this browser (since the click)";
        return chip;
      }),
    );
  }

  // -- search --
  function requestBody(twoPhase) {
    const rerank = $("rerank").value;
    const body = {
      query: $("query").value,
      top_k: Number($("top_k").value),
      top_n: Number($("top_n").value),
      rerank: rerank === "on" ? true : rerank === "off" ? false : "auto",
      mode: twoPhase ? "two-phase" : "blocking",
      return_text: true,
    };
    if ($("retriever").value) body.retriever = $("retriever").value;
    return body;
  }

  // Server-Sent Events over a POST: EventSource only does GET without headers, so the stream is read with
  // fetch and split into events here (the format is tiny: blocks separated by a blank line).
  async function readEvents(resp, onEvent) {
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (value) buf += decoder.decode(value, { stream: true });
      buf = buf.replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buf.indexOf("\n\n")) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = "message";
        const data = [];
        for (const line of block.split("\n")) {
          if (line.startsWith("event:")) event = line.slice(6).trim();
          else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
        }
        if (data.length) onEvent(event, JSON.parse(data.join("\n")));
      }
      if (done) return;
    }
  }

  async function search(ev) {
    ev.preventDefault();
    if (running) running.abort();
    const controller = new AbortController();
    running = controller;
    clearError();
    const twoPhase = $("two_phase").checked;
    const t0 = performance.now();
    const browser = [];
    document.body.dataset.busy = "true";
    $("go").disabled = true;
    for (const kind of ["stage1", "reranked"]) {
      fillList(kind, []);
      $(kind + "-meta").textContent = "";
      delete $("col-" + kind).dataset.filledAt;
    }
    $("summary").hidden = true;
    setColumn("stage1", "loading", "Searching…");
    setColumn("reranked", "loading", twoPhase ? "Waiting for stage 1…" : "Searching and reranking…");
    let finalSeen = false;
    try {
      const resp = await fetch("v1/search", {
        method: "POST",
        headers: apiHeaders(twoPhase ? "text/event-stream" : "application/json"),
        body: JSON.stringify(requestBody(twoPhase)),
        signal: controller.signal,
      });
      if (!resp.ok) {
        const { detail, name } = await errorOf(resp);
        const hint = resp.status === 401 ? " Type the server's API key in the API key box." : "";
        showError(`HTTP ${resp.status}`, detail + hint, name);
        if (resp.status === 401) $("api_key").focus();
        setColumn("stage1", "idle", "");
        setColumn("reranked", "idle", "");
        return;
      }
      const ctype = resp.headers.get("content-type") || "";
      if (!ctype.includes("text/event-stream")) {
        const result = await resp.json();
        browser.push(["browser total", performance.now() - t0]);
        renderStage1(result, true);
        renderFinal(result);
        renderSummary(result, browser);
        finalSeen = true;
        return;
      }
      await readEvents(resp, (event, data) => {
        const at = performance.now() - t0;
        if (event === "stage1") {
          browser.push(["browser stage 1", at]);
          renderStage1(data, false);
          $("col-stage1").dataset.filledAt = at.toFixed(1);
          $("reranked-meta").textContent = data.reranker ? "· " + data.reranker : "";
          setColumn("reranked", "pending", `Stage 1 arrived after ${msText(at)}; waiting for the reranker…`);
          renderSummary(data, browser, ["stage1_ms"]);
          $("verdict").textContent = "Stage 1 shown; reranking…";
          $("verdict").dataset.state = "pending";
        } else if (event === "reranked") {
          browser.push(["browser reranked", at]);
          renderFinal(data);
          $("col-reranked").dataset.filledAt = at.toFixed(1);
          renderSummary(data, browser);
          finalSeen = true;
        } else if (event === "error") {
          showError("Stage 2 failed", data.detail || "", data.error || "");
          setColumn("reranked", "failed", "Stage 2 failed: " + (data.detail || "unknown error") +
            ". The stage-1 list is the answer.");
          $("verdict").textContent = "Not reranked: stage 2 failed";
          $("verdict").dataset.state = "warn";
          finalSeen = true;
        }
      });
      if (!finalSeen) {
        showError("Stream ended early", "the server closed the stream before the reranked list arrived.");
        setColumn("reranked", "failed", "No reranked list (the stream ended early).");
      }
    } catch (err) {
      if (err.name === "AbortError") return;
      showError("Request failed", err.message || String(err));
      if ($("col-stage1").dataset.state === "loading") setColumn("stage1", "idle", "");
      if ($("col-reranked").dataset.state !== "filled") setColumn("reranked", "failed", "No reranked list.");
    } finally {
      if (running === controller) {
        running = null;
        $("go").disabled = false;
        document.body.dataset.busy = "false";
      }
    }
  }

  // Hovering a hit highlights the same document in the other column.
  function highlight(ev) {
    const li = ev.target.closest("li.hit");
    const id = ev.type === "mouseover" && li ? li.dataset.id : null;
    for (const node of document.querySelectorAll("li.hit")) node.classList.toggle("hl", id !== null && node.dataset.id === id);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const key = $("api_key");
    key.value = sessionStorage.getItem(KEY_STORE) || "";
    key.addEventListener("input", () => {
      if (key.value.trim()) sessionStorage.setItem(KEY_STORE, key.value.trim());
      else sessionStorage.removeItem(KEY_STORE);
    });
    $("search-form").addEventListener("submit", search);
    document.querySelector(".columns").addEventListener("mouseover", highlight);
    document.querySelector(".columns").addEventListener("mouseout", highlight);
    checkServer();
    $("query").focus();
  });
})();
