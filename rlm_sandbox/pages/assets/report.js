// The eval report page: runs compared side by side, then every task of every run,
// filterable and searchable; a row opens to show the query, answer and expected value.
(function () {
  "use strict";
  const { el, add, num, str, int, seconds, usd, badge, stopTone } = RLM;
  const started = performance.now();
  const app = document.getElementById("app");
  const payload = RLM.data() || {};
  const runs = (Array.isArray(payload.runs) ? payload.runs : []).filter((r) => r && typeof r === "object");

  function accuracyCell(summary) {
    const cell = el("td", "n");
    const barBox = el("span", "accuracy-bar");
    const fill = el("span", "accuracy-fill");
    fill.style.width = Math.round(100 * num(summary.accuracy)) + "%";
    barBox.appendChild(fill);
    add(cell, barBox, (100 * num(summary.accuracy)).toFixed(1) + "% (" + int(summary.correct) + "/" + int(summary.tasks) + ")");
    return cell;
  }

  function comparison() {
    const section = el("section", "compare");
    section.appendChild(el("h2", null, "runs compared"));
    const table = el("table", "grid report-table");
    const head = el("tr");
    for (const name of ["run", "accuracy", "mean score", "cost", "tokens in / out", "model calls", "sub-calls", "p50 / p95", "stop reasons", "source"]) {
      head.appendChild(el("th", null, name));
    }
    table.appendChild(head);
    for (const run of runs) {
      const s = run.summary || {};
      const row = el("tr");
      const stops = el("td");
      for (const [reason, count] of Object.entries(s.stop_reasons || {})) {
        add(stops, badge(reason + " " + int(count), stopTone(reason)), " ");
      }
      add(row, el("td", null, str(run.label)), accuracyCell(s), el("td", "n", num(s.mean_score).toFixed(3)),
        el("td", "n", usd(s.cost_usd) + ((s.unpriced_models || []).length ? " + unpriced" : "")),
        el("td", "n", int(s.input_tokens) + " / " + int(s.output_tokens)), el("td", "n", int(s.model_calls)),
        el("td", "n", int(s.sub_calls)), el("td", "n", seconds(s.p50_s) + " / " + seconds(s.p95_s)), stops,
        sourceCell(str(run.source)));
      table.appendChild(row);
    }
    section.appendChild(table);
    return section;
  }

  function sourceCell(path) {
    const cell = el("td", "wrap", path.split("/").pop());
    cell.title = path;
    return cell;
  }

  function tasks() {
    const section = el("section", "tasks");
    section.appendChild(el("h2", null, "tasks"));
    const filters = el("div", "filters");
    const runSelect = el("select");
    runSelect.appendChild(option("all runs", "*"));
    runs.forEach((run, i) => runSelect.appendChild(option(str(run.label), String(i))));
    const outcome = el("select");
    for (const [text, value] of [["all outcomes", "*"], ["wrong only", "wrong"], ["right only", "right"], ["errors", "error"]]) {
      outcome.appendChild(option(text, value));
    }
    const search = el("input", "search");
    search.type = "search";
    search.placeholder = "filter by task, query, answer, error…";
    const count = el("span", "search-count");
    add(filters, runSelect, outcome, search, count);
    section.appendChild(filters);

    const table = el("table", "grid report-table");
    const head = el("tr");
    for (const name of ["task", "run", "suite", "size", "correct", "score", "stop", "cost", "tokens", "calls", "time", "answer"]) {
      head.appendChild(el("th", null, name));
    }
    table.appendChild(head);
    const body = el("tbody");
    table.appendChild(body);
    section.appendChild(table);

    const rows = [];
    runs.forEach((run, runIndex) => {
      for (const record of Array.isArray(run.records) ? run.records : []) {
        if (!record || typeof record !== "object") continue;
        const text = Object.values(record).map((v) => (typeof v === "string" ? v : JSON.stringify(v))).join("\n").toLowerCase();
        rows.push({ run, runIndex, record, text, element: null, detail: null });
      }
    });

    const LIMIT = 1000;
    const draw = () => {
      const needle = search.value.trim().toLowerCase();
      body.textContent = "";
      let shown = 0, matched = 0;
      for (const row of rows) {
        const r = row.record;
        if (runSelect.value !== "*" && String(row.runIndex) !== runSelect.value) continue;
        if (outcome.value === "wrong" && r.correct) continue;
        if (outcome.value === "right" && !r.correct) continue;
        if (outcome.value === "error" && r.stop_reason !== "error" && !r.error) continue;
        if (needle && !row.text.includes(needle)) continue;
        matched += 1;
        if (shown >= LIMIT) continue;
        shown += 1;
        if (!row.element) build(row);
        body.appendChild(row.element);
        if (row.detail && row.detail.isConnected === false && row.open) body.appendChild(row.detail);
      }
      count.textContent = int(matched) + " task" + (matched === 1 ? "" : "s") + (matched > shown ? " (first " + int(shown) + " shown)" : "");
    };
    let timer = 0;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(draw, 120);
    });
    runSelect.addEventListener("change", draw);
    outcome.addEventListener("change", draw);
    draw();
    return section;
  }

  function build(row) {
    const r = row.record;
    const tr = el("tr", "task-row " + (r.correct ? "right" : "wrong"));
    add(tr, el("td", null, str(r.task_id)), el("td", null, str(row.run.label)), el("td", null, str(r.suite || "")),
      el("td", "n", r.size_tokens ? int(r.size_tokens) : int(num(r.context_chars) / 4)),
      el("td", r.correct ? "yes" : "no", r.correct ? "✓" : "✗"), el("td", "n", num(r.score).toFixed(2)));
    const stop = el("td");
    stop.appendChild(badge(str(r.stop_reason), stopTone(r.stop_reason)));
    add(tr, stop, el("td", "n", usd(r.cost_usd)), el("td", "n", int(num(r.input_tokens) + num(r.output_tokens))),
      el("td", "n", int(r.model_calls) + " + " + int(r.sub_calls)), el("td", "n", seconds(r.elapsed_s)),
      el("td", "wrap", str(r.answer === null || r.answer === undefined ? "(none)" : r.answer).slice(0, 120)));
    tr.addEventListener("click", () => {
      if (!row.detail) {
        row.detail = el("tr", "detail-row");
        const cell = el("td");
        cell.colSpan = 12;
        for (const key of ["query", "answer", "expected", "score_detail", "error", "trajectory_path"]) {
          if (r[key] === null || r[key] === undefined || r[key] === "") continue;
          const box = el("div", "labelled");
          add(box, el("div", "label", key.replace(/_/g, " ")), RLM.longText(str(r[key]), key === "error" ? "error" : key === "answer" ? "answer" : ""));
          cell.appendChild(box);
        }
        row.detail.appendChild(cell);
      }
      row.open = !row.open;
      if (row.open) tr.after(row.detail);
      else row.detail.remove();
    });
    row.element = tr;
  }

  function option(text, value) {
    const node = el("option", null, text);
    node.value = value;
    return node;
  }

  document.title = "RLM eval report";
  const top = el("div", "topbar");
  add(top, el("span", "brand", "rlm-sandbox"), el("span", "run-id", "eval report · " + int(runs.length) + " run" + (runs.length === 1 ? "" : "s")));
  app.appendChild(top);
  const main = el("main");
  if (!runs.length) main.appendChild(el("section", "note", "no runs in this report"));
  else add(main, comparison(), tasks());
  app.appendChild(main);
  const elapsed = performance.now();
  document.body.dataset.renderMs = String(Math.round(elapsed - started));
  document.body.dataset.ready = "1";
  app.appendChild(el("footer", "foot", "drawn in " + Math.round(elapsed) + " ms · rendered offline; nothing in this page loads from the network"));
})();
