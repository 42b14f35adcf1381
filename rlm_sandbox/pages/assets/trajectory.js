// The trajectory page: header and totals, problems, a timeline of every node and call
// on one time axis, the collapsible tree of nodes and turns, and search.
// Event types this page does not know are shown generically, so new ones appear.
(function () {
  "use strict";
  const { el, add, num, str, int, seconds, usd, badge, stopTone } = RLM;
  const started = performance.now();
  const app = document.getElementById("app");
  const payload = RLM.data() || {};
  const events = (Array.isArray(payload.events) ? payload.events : []).filter(
    (e) => e && typeof e === "object" && !Array.isArray(e)
  );
  // Fields every event carries, shown elsewhere (placement, time axis, header).
  const PLUMBING = new Set(["type", "t", "run_id", "node", "depth"]);
  const KNOWN = new Set(["metadata", "node_start", "model_call", "exec", "sub_call", "node_end", "result", "interrupted"]);

  // ------------------------------------------------------------ the model of the run
  const nodes = new Map();
  const roots = [];
  const runLevel = [];
  let meta = null;
  let result = null;
  let interrupted = null;
  let endTime = 0;

  function nodeFor(id) {
    const key = String(id);
    let node = nodes.get(key);
    if (!node) {
      node = {
        id: key, parent: null, depth: null, query: "", start: null, end: null, stop: null, answer: null,
        error: null, iterations: null, turns: new Map(), currentTurn: null, loose: [], children: [],
        startIndex: -1, endIndex: -1, tokensIn: 0, tokensOut: 0, cost: 0, calls: 0,
      };
      nodes.set(key, node);
    }
    return node;
  }

  function turnFor(node, iteration) {
    const key = String(iteration);
    let turn = node.turns.get(key);
    if (!turn) {
      turn = { iteration: key, model: [], items: [] };
      node.turns.set(key, turn);
    }
    node.currentTurn = turn;
    return turn;
  }

  // Where an event sits: a turn of its node when it names one, else the node's current
  // turn (calls made by the code of that turn), else the node itself.
  function placeInNode(node, item, event) {
    if (event.iteration !== undefined && event.iteration !== null) turnFor(node, event.iteration).items.push(item);
    else if (node.currentTurn) node.currentTurn.items.push(item);
    else node.loose.push(item);
  }

  events.forEach((event, index) => {
    const type = String(event.type);
    const t = num(event.t);
    endTime = Math.max(endTime, t);
    if (type === "metadata") {
      meta = event;
    } else if (type === "result") {
      result = event;
    } else if (type === "interrupted") {
      interrupted = event;
    } else if (type === "node_start") {
      const node = nodeFor(event.node);
      node.parent = event.parent === null || event.parent === undefined ? null : String(event.parent);
      node.depth = event.depth;
      node.query = str(event.query);
      node.start = t;
      node.startIndex = index;
      if (node.parent !== null) {
        const parent = nodeFor(node.parent);
        parent.children.push(node);
        placeInNode(parent, { kind: "child", node, index }, {});
      } else {
        roots.push(node);
      }
    } else if (type === "node_end") {
      const node = nodeFor(event.node);
      node.end = t;
      node.endIndex = index;
      node.stop = event.stop_reason;
      node.answer = event.answer;
      node.error = event.error;
      node.iterations = event.iterations;
    } else if (type === "model_call" && event.node !== undefined) {
      const node = nodeFor(event.node);
      turnFor(node, event.iteration).model.push(index);
      node.tokensIn += num(event.input_tokens);
      node.tokensOut += num(event.output_tokens);
      node.cost += num(event.cost_usd);
      node.calls += 1;
    } else if (event.node !== undefined && event.node !== null) {
      placeInNode(nodeFor(event.node), { kind: "event", index }, event);
    } else {
      runLevel.push(index);
    }
  });
  if (result) endTime = Math.max(endTime, num(result.elapsed_s));
  for (const node of nodes.values()) {
    if (node.start === null) {
      node.start = 0;
      if (!roots.includes(node) && node.parent === null) roots.push(node);
    }
    if (node.end === null) node.end = endTime;
  }

  function startOf(event) {
    return Math.max(0, num(event.t) - num(event.duration_s));
  }

  function label(event) {
    const type = String(event.type);
    if (type === "sub_call") return (event.kind || "?") + "_query";
    if (type === "model_call") return "model call";
    return type.replace(/_/g, " ");
  }

  function isProblem(event) {
    const type = String(event.type);
    if (type === "node_end") return event.stop_reason !== "final";
    if (type === "result") return event.stop_reason !== "final" || !!event.error;
    if (type === "interrupted") return true;
    return !!(event.error || event.timed_out || event.restarted);
  }

  // ------------------------------------------------------------ element registry
  // Elements are built lazily; `reveal` builds and opens whatever leads to an event.
  const elementOf = new Map();
  const nodeViews = new Map();

  function remember(index, element) {
    elementOf.set(index, element);
    element.dataset.event = String(index);
    return element;
  }

  // ------------------------------------------------------------ header and totals
  function header() {
    const box = el("header", "run-header");
    const stop = result ? result.stop_reason : interrupted ? "interrupted" : "unfinished";
    const title = el("div", "run-title");
    add(title, el("h1", null, "RLM trajectory"), badge(String(stop), stopTone(stop)));
    if (meta && meta.run_id) title.appendChild(el("span", "run-id", str(meta.run_id)));
    box.appendChild(title);
    if (meta) {
      const facts = el("div", "facts");
      const context = meta.context && typeof meta.context === "object" ? meta.context : {};
      add(
        facts,
        fact("model", str(meta.model)),
        fact("sub-model", str(meta.sub_model)),
        fact("context", str(context.type_name || "?") + " · " + int(context.total_chars) + " chars"),
        meta.limits ? fact("max depth", str(meta.limits.max_depth)) : null
      );
      box.appendChild(facts);
      box.appendChild(labelled("query", RLM.longText(str(meta.query), "query")));
      if (context.preview !== undefined) box.appendChild(labelled("context preview", RLM.longText(str(context.preview), "")));
    }
    if (result) {
      box.appendChild(labelled("answer", RLM.longText(result.answer === null ? "(no answer)" : str(result.answer), "answer")));
      if (result.error) box.appendChild(labelled("error", RLM.longText(str(result.error), "error")));
    }
    if (interrupted) box.appendChild(el("div", "banner bad", "The run was interrupted (Ctrl-C) before it finished."));
    if (payload.source) box.appendChild(el("div", "source", "file: " + str(payload.source)));
    return box;
  }

  function fact(name, value) {
    const item = el("span", "fact");
    add(item, el("span", "fact-name", name), el("span", "fact-value", value));
    return item;
  }

  function labelled(name, body) {
    const box = el("div", "labelled");
    add(box, el("div", "label", name), body);
    return box;
  }

  function totals() {
    const section = el("section", "totals");
    let tokensIn = 0, tokensOut = 0, cost = 0, calls = 0;
    const usage = result && result.usage && result.usage.total ? result.usage.total : null;
    const timeByKind = new Map();
    let execs = 0, execErrors = 0, subCalls = 0;
    for (const event of events) {
      const type = String(event.type);
      if (type === "model_call") {
        tokensIn += num(event.input_tokens);
        tokensOut += num(event.output_tokens);
        cost += num(event.cost_usd);
        calls += 1;
      }
      if (type === "exec") {
        execs += 1;
        if (event.error) execErrors += 1;
      }
      if (type === "sub_call") {
        subCalls += 1;
        if (event.input_tokens !== undefined) {
          tokensIn += num(event.input_tokens);
          tokensOut += num(event.output_tokens);
          cost += num(event.cost_usd);
          calls += 1;
        }
      }
      if (event.duration_s !== undefined && type !== "node_end") {
        const kind = label(event);
        timeByKind.set(kind, (timeByKind.get(kind) || 0) + num(event.duration_s));
      }
    }
    if (usage) {
      tokensIn = num(usage.input_tokens);
      tokensOut = num(usage.output_tokens);
      cost = num(usage.cost_usd);
      calls = num(usage.calls);
    }
    const wall = result ? num(result.elapsed_s) : endTime;
    const cards = el("div", "stats");
    add(
      cards,
      RLM.stat("wall time", seconds(wall), result ? int(result.iterations) + " root turns" : "no result event"),
      RLM.stat("tokens", int(tokensIn + tokensOut), int(tokensIn) + " in · " + int(tokensOut) + " out"),
      RLM.stat("cost", usd(cost), int(calls) + " model calls" + (usage ? "" : " (from events)")),
      RLM.stat("nodes", int(nodes.size), "deepest at depth " + Math.max(0, ...[...nodes.values()].map((n) => num(n.depth)))),
      RLM.stat("code blocks", int(execs), execErrors ? int(execErrors) + " raised an error" : "no errors", execErrors ? "warn" : ""),
      RLM.stat("sub-calls", int(subCalls), "llm_query and rlm_query"),
      RLM.stat("events", int(events.length), problems.length ? int(problems.length) + " problems" : "no problems", problems.length ? "bad" : "ok")
    );
    section.appendChild(cards);

    const split = el("div", "split");
    // Time by kind: summed durations (concurrent calls add up, so this can pass wall time).
    const kinds = [...timeByKind.entries()].sort((a, b) => b[1] - a[1]);
    const most = kinds.length ? kinds[0][1] : 1;
    const times = el("div", "panel");
    times.appendChild(el("h3", null, "time by kind (summed over concurrent work)"));
    for (const [kind, total] of kinds) {
      const row = el("div", "bar-row");
      const bar = el("div", "bar-fill kind-" + kind.replace(/[^a-z_]/g, "_") + (kind.includes("tool") ? " kind-tool" : ""));
      bar.style.width = Math.max(1, (100 * total) / (most || 1)) + "%";
      const track = el("div", "bar-track");
      track.appendChild(bar);
      const name = el("span", "bar-label", kind.slice(0, 80));
      name.title = kind;
      add(row, name, track, el("span", "bar-value", seconds(total)));
      times.appendChild(row);
    }
    split.appendChild(times);

    const models = el("div", "panel");
    models.appendChild(el("h3", null, "usage by model"));
    const table = el("table", "grid");
    const head = el("tr");
    for (const name of ["model", "calls", "input", "output", "cost"]) head.appendChild(el("th", null, name));
    table.appendChild(head);
    const perModel = result && result.usage && result.usage.models && typeof result.usage.models === "object" ? result.usage.models : null;
    if (perModel) {
      for (const [name, value] of Object.entries(perModel)) {
        const row = el("tr");
        add(row, el("td", null, name.slice(0, 200)), el("td", "n", int(value.calls)), el("td", "n", int(value.input_tokens)),
          el("td", "n", int(value.output_tokens)), el("td", "n", usd(value.cost_usd)));
        table.appendChild(row);
      }
    } else {
      const row = el("tr");
      add(row, el("td", null, "(from model calls)"), el("td", "n", int(calls)), el("td", "n", int(tokensIn)),
        el("td", "n", int(tokensOut)), el("td", "n", usd(cost)));
      table.appendChild(row);
    }
    models.appendChild(table);
    if (result && result.timings) {
      const t = result.timings;
      models.appendChild(el("div", "note", "summed time: model " + seconds(t.model_s) + " · exec " + seconds(t.exec_s) +
        " · sandbox start " + seconds(t.sandbox_start_s) + " · " + int(result.sandboxes_started) + " sandboxes"));
    }
    split.appendChild(models);
    section.appendChild(split);
    return section;
  }

  // ------------------------------------------------------------ problems
  const problems = [];
  events.forEach((event, index) => {
    if (isProblem(event)) problems.push(index);
  });

  function problemList() {
    if (!problems.length) return null;
    const box = el("section", "problems");
    const list = RLM.lazyDetails(
      [el("span", "problems-title", "⚠ " + int(problems.length) + " problem" + (problems.length === 1 ? "" : "s")),
        " — stops other than final, errors, timeouts, restarts"],
      () => {
        const ul = el("ul", "problem-list");
        for (const index of problems.slice(0, 500)) {
          const event = events[index];
          const li = el("li");
          const link = el("button", "link", where(event));
          link.type = "button";
          link.addEventListener("click", () => reveal(index));
          const what = event.error ? lastLine(str(event.error)) : event.timed_out ? "timed out" : event.restarted ? "sandbox restarted" :
            "stopped: " + str(event.stop_reason);
          add(li, link, " ", el("span", "problem-text", what.slice(0, 300)));
          ul.appendChild(li);
        }
        if (problems.length > 500) ul.appendChild(el("li", "note", int(problems.length - 500) + " more (use search)"));
        return ul;
      },
      "problems-box",
      problems.length <= 20
    );
    box.appendChild(list);
    return box;
  }

  // A traceback says what went wrong on its last line.
  function lastLine(text) {
    const lines = text.trim().split("\n").filter((line) => line.trim());
    return lines.length ? lines[lines.length - 1] : text;
  }

  function where(event) {
    const parts = [];
    if (event.node !== undefined && event.node !== null) parts.push("node " + str(event.node));
    if (event.iteration !== undefined && event.iteration !== null) parts.push("turn " + str(event.iteration));
    parts.push(label(event));
    return parts.join(" · ");
  }

  // ------------------------------------------------------------ timeline
  function orderedNodes() {
    const out = [];
    const walk = (node) => {
      out.push(node);
      for (const child of node.children) walk(child);
    };
    for (const root of roots) walk(root);
    for (const node of nodes.values()) if (!out.includes(node) && out.length < 100000) out.push(node);
    return out;
  }

  // The critical path: from each root, the child that finished last, down the tree.
  function criticalPath() {
    const path = new Set();
    for (const root of roots) {
      let node = root;
      while (node) {
        path.add(node.id);
        let next = null;
        for (const child of node.children) if (!next || child.end > next.end) next = child;
        node = next;
      }
    }
    return path;
  }

  const MAX_LANES = 6;

  function timeline() {
    const section = el("section", "timeline");
    const span = endTime || 1;
    const critical = criticalPath();
    const headRow = el("div", "tl-head");
    add(headRow, el("h2", null, "timeline"),
      el("span", "legend-item kind-model_call", "model call"), el("span", "legend-item kind-exec", "code"),
      el("span", "legend-item kind-llm_query", "llm_query"), el("span", "legend-item kind-tool", "tool"),
      el("span", "legend-item kind-error", "error"),
      el("span", "legend-item kind-other", "other"), el("span", "legend-item critical-legend", "critical path"));
    section.appendChild(headRow);

    const chart = el("div", "tl-chart");
    // Axis with round ticks.
    const axis = el("div", "tl-row tl-axis");
    axis.appendChild(el("div", "tl-label", "seconds"));
    const axisTrack = el("div", "tl-track");
    const step = niceStep(span / 8);
    for (let x = 0; x <= span + 1e-9; x += step) {
      const tick = el("span", "tl-tick", seconds(x));
      tick.style.left = (100 * x) / span + "%";
      if (x > span * 0.94) tick.classList.add("tl-tick-end");
      axisTrack.appendChild(tick);
    }
    axis.appendChild(axisTrack);
    chart.appendChild(axis);
    chart.appendChild(concurrencyRow(span));

    const rows = orderedNodes();
    const LIMIT_ROWS = 400;
    for (const node of rows.slice(0, LIMIT_ROWS)) chart.appendChild(nodeRow(node, span, critical.has(node.id)));
    if (rows.length > LIMIT_ROWS) chart.appendChild(el("div", "note", int(rows.length - LIMIT_ROWS) + " more nodes are not drawn"));
    section.appendChild(chart);

    const chain = rows.filter((node) => critical.has(node.id));
    if (chain.length) {
      const text = chain.map((node) => "node " + node.id + " (" + seconds(node.end - node.start) + ")").join(" → ");
      section.appendChild(el("div", "note critical-note", "critical path: " + text));
    }
    return section;
  }

  function niceStep(raw) {
    const power = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * power) return m * power;
    return 10 * power;
  }

  // How many model calls, code blocks and sub-calls were in flight, over time.
  function concurrencyRow(span) {
    const BUCKETS = 160;
    const counts = new Array(BUCKETS).fill(0);
    for (const event of events) {
      const type = String(event.type);
      const counted = type === "model_call" || (type === "sub_call" && event.kind !== "rlm") ||
        (!KNOWN.has(type) && event.duration_s !== undefined);
      if (!counted) continue;
      const a = Math.floor((startOf(event) / span) * BUCKETS);
      const b = Math.min(BUCKETS - 1, Math.floor((num(event.t) / span) * BUCKETS));
      for (let i = Math.max(0, a); i <= b; i++) counts[i] += 1;
    }
    const peak = Math.max(1, ...counts);
    const row = el("div", "tl-row tl-concurrency");
    const name = el("div", "tl-label", "in flight (max " + peak + ")");
    name.title = "model calls, llm_query and tool calls in flight at once; peak " + peak;
    row.appendChild(name);
    const track = el("div", "tl-track");
    counts.forEach((count, i) => {
      if (!count) return;
      const bar = el("span", "tl-spark");
      bar.style.left = (100 * i) / BUCKETS + "%";
      bar.style.width = 100 / BUCKETS + "%";
      bar.style.height = (100 * count) / peak + "%";
      bar.title = count + " in flight";
      track.appendChild(bar);
    });
    row.appendChild(track);
    return row;
  }

  function nodeRow(node, span, onPath) {
    const row = el("div", "tl-row" + (onPath ? " critical" : ""));
    const name = el("button", "tl-label link", "  ".repeat(Math.min(8, num(node.depth))) + "node " + node.id);
    name.type = "button";
    name.title = "depth " + str(node.depth) + " · " + str(node.stop || "running") + " · " + node.query.slice(0, 200);
    name.addEventListener("click", () => revealNode(node, true));
    row.appendChild(name);
    const track = el("div", "tl-track");
    const life = el("span", "tl-life stop-" + stopTone(node.stop));
    place(life, node.start, node.end, span);
    life.title = "node " + node.id + ": " + seconds(node.end - node.start) + " · " + str(node.stop || "unfinished");
    track.appendChild(life);
    // Bars of this node's own events, packed into lanes so overlapping calls show side by side.
    const laneEnds = [];
    const bars = [];
    for (const turn of node.turns.values()) {
      for (const index of turn.model) bars.push(index);
      for (const item of turn.items) if (item.kind === "event") bars.push(item.index);
    }
    for (const item of node.loose) if (item.kind === "event") bars.push(item.index);
    bars.sort((a, b) => startOf(events[a]) - startOf(events[b]));
    for (const index of bars) {
      const event = events[index];
      if (event.duration_s === undefined) continue;
      if (String(event.type) === "sub_call" && event.kind === "rlm") continue; // the child's own row shows it
      const begin = startOf(event);
      let lane = laneEnds.findIndex((end) => end <= begin);
      if (lane < 0) {
        lane = laneEnds.length < MAX_LANES ? laneEnds.length : MAX_LANES - 1;
      }
      laneEnds[lane] = Math.max(laneEnds[lane] || 0, num(event.t));
      const bar = el("span", "tl-bar " + barKind(event));
      place(bar, begin, num(event.t), span);
      bar.style.top = 4 + lane * 7 + "px";
      bar.title = where(event) + " · " + seconds(event.duration_s) + (event.error ? " · error" : "");
      bar.addEventListener("click", () => reveal(index));
      track.appendChild(bar);
    }
    track.style.height = Math.max(18, 8 + laneEnds.length * 7) + "px";
    row.appendChild(track);
    return row;
  }

  function barKind(event) {
    const type = String(event.type);
    if (event.error || event.timed_out) return "kind-error";
    if (type === "model_call") return "kind-model_call";
    if (type === "exec") return "kind-exec";
    if (type === "sub_call") return "kind-llm_query";
    if (type.includes("tool")) return "kind-tool";
    return "kind-other";
  }

  function place(node, from, to, span) {
    node.style.left = (100 * from) / span + "%";
    node.style.width = Math.max(0.15, (100 * Math.max(0, to - from)) / span) + "%";
  }

  // ------------------------------------------------------------ the tree
  const TURNS_AT_ONCE = 25;
  const CALLS_AT_ONCE = 100;

  function nodeView(node, open) {
    const summary = el("span", "node-summary");
    add(
      summary,
      el("span", "node-name", "node " + node.id),
      el("span", "node-depth", "depth " + str(node.depth)),
      badge(str(node.stop || "unfinished"), stopTone(node.stop)),
      el("span", "node-meta", seconds(node.end - node.start) + " · " + int(node.turns.size) + " turns · " +
        int(node.tokensIn + node.tokensOut) + " tokens" + (node.cost ? " · " + usd(node.cost) : "")),
      el("span", "node-query", node.query.slice(0, 160).replace(/\s+/g, " "))
    );
    const details = RLM.lazyDetails(summary, () => nodeBody(node), "node depth-" + Math.min(6, num(node.depth)), open);
    if (node.startIndex >= 0) remember(node.startIndex, details);
    nodeViews.set(node.id, details);
    return details;
  }

  function nodeBody(node) {
    const body = el("div", "node-body");
    if (node.query && node.parent !== null) body.appendChild(labelled("task given by node " + node.parent, RLM.longText(node.query, "query")));
    for (const item of node.loose) body.appendChild(itemView(item));
    const turns = [...node.turns.values()];
    const list = el("div", "turns");
    body.appendChild(list);
    let shown = 0;
    const more = el("button", "more block", "");
    more.type = "button";
    const showUpTo = (count) => {
      while (shown < Math.min(count, turns.length)) list.appendChild(turnView(node, turns[shown++]));
      more.textContent = "show " + int(Math.min(TURNS_AT_ONCE, turns.length - shown)) + " more turns of " + int(turns.length - shown) + " remaining";
      more.hidden = shown >= turns.length;
    };
    more.addEventListener("click", () => showUpTo(shown + TURNS_AT_ONCE));
    body.appendChild(more);
    showUpTo(TURNS_AT_ONCE);
    body.showTurn = (key) => {
      const at = turns.findIndex((turn) => turn.iteration === key);
      if (at >= 0) showUpTo(at + 1);
    };
    if (node.endIndex >= 0) body.appendChild(remember(node.endIndex, endView(node)));
    return body;
  }

  function endView(node) {
    const box = el("div", "node-end stop-" + stopTone(node.stop));
    add(box, el("span", "end-mark", "■"), " ", badge(str(node.stop), stopTone(node.stop)),
      " after " + int(node.iterations) + " turns");
    if (node.error) box.appendChild(RLM.longText(str(node.error), "error"));
    box.appendChild(labelled("answer", RLM.longText(node.answer === null || node.answer === undefined ? "(no answer)" : str(node.answer), "answer")));
    return box;
  }

  function turnView(node, turn) {
    const box = el("div", "turn");
    box.dataset.turn = turn.iteration;
    box.appendChild(el("div", "turn-title", "turn " + turn.iteration));
    const shownCode = new Set();
    for (const index of turn.model) {
      box.appendChild(remember(index, modelView(events[index])));
      for (const match of str(events[index].response).matchAll(/```[\w+-]*[^\n]*\n([\s\S]*?)(?:```|$)/g)) {
        shownCode.add(match[1].trim());
      }
    }
    // Calls made by code come before the exec event of that code: group them with it.
    let pending = [];
    const flushCalls = (into) => {
      if (pending.length) into.appendChild(callsView(pending));
      pending = [];
    };
    for (const item of turn.items) {
      if (item.kind === "event" && String(events[item.index].type) === "exec") {
        const view = execView(events[item.index], item.index, shownCode);
        flushCalls(view.calls);
        box.appendChild(remember(item.index, view.box));
      } else {
        pending.push(item);
      }
    }
    flushCalls(box);
    return box;
  }

  function modelView(event) {
    const box = el("div", "card model");
    const head = el("div", "card-head");
    add(head, el("span", "card-kind", "model"), el("span", "card-meta", str(event.model) + " · " + int(event.input_tokens) +
      " → " + int(event.output_tokens) + " tokens · " + seconds(event.duration_s) + (event.cost_usd ? " · " + usd(event.cost_usd) : "")));
    box.appendChild(head);
    if (event.prompt) {
      box.appendChild(RLM.lazyDetails("prompt (" + int(str(event.prompt).length) + " chars, new since the last call)",
        () => RLM.longText(str(event.prompt), "prompt"), "prompt"));
    }
    box.appendChild(RLM.reply(str(event.response)));
    for (const key of Object.keys(event)) {
      if (!PLUMBING.has(key) && ![ "iteration", "model", "input_tokens", "output_tokens", "cost_usd", "duration_s", "prompt", "response"].includes(key)) {
        box.appendChild(keyValue(key, event[key]));
      }
    }
    return box;
  }

  function execView(event, index, shownCode) {
    const failed = !!event.error;
    const box = el("div", "card exec" + (failed ? " failed" : "") + (event.timed_out ? " timed-out" : ""));
    const head = el("div", "card-head");
    add(head, el("span", "card-kind", "code " + (num(event.block) + 1)), el("span", "card-meta", seconds(event.duration_s)));
    if (event.timed_out) head.appendChild(badge("timed out", "bad"));
    if (event.restarted) head.appendChild(badge("sandbox restarted; variables lost", "bad"));
    if (event.truncated) head.appendChild(badge("output truncated by the sandbox", "warn"));
    if (event.final !== null && event.final !== undefined) head.appendChild(badge("FINAL", "ok"));
    if (failed) head.appendChild(badge("error", "bad"));
    box.appendChild(head);
    const code = str(event.code);
    if (shownCode && shownCode.has(code.trim())) {
      // The reply just above shows this code already; keep it one click away.
      box.appendChild(RLM.lazyDetails("code (as in the reply above)", () => RLM.codeBlock(code, "repl"), "prompt"));
    } else {
      box.appendChild(RLM.codeBlock(code, "repl"));
    }
    const calls = el("div", "calls-slot");
    box.appendChild(calls);
    const out = el("div", "output");
    if (event.stdout) out.appendChild(labelled("stdout", RLM.longText(str(event.stdout), "stdout")));
    if (event.stderr) out.appendChild(labelled("stderr", RLM.longText(str(event.stderr), "stderr")));
    if (event.error) out.appendChild(labelled("error", RLM.longText(str(event.error), "error")));
    if (event.final !== null && event.final !== undefined) out.appendChild(labelled("final answer", RLM.longText(str(event.final), "answer")));
    if (!out.childNodes.length) out.appendChild(el("div", "note", "(no output)"));
    box.appendChild(out);
    for (const key of Object.keys(event)) {
      if (!PLUMBING.has(key) && !["iteration", "block", "code", "stdout", "stderr", "error", "final", "timed_out", "restarted", "truncated", "duration_s"].includes(key)) {
        box.appendChild(keyValue(key, event[key]));
      }
    }
    return { box, calls, index };
  }

  function callsView(items) {
    const children = items.filter((item) => item.kind === "child").length;
    const counts = new Map();
    let failures = 0;
    for (const item of items) {
      if (item.kind !== "event") continue;
      const event = events[item.index];
      const name = label(event);
      counts.set(name, (counts.get(name) || 0) + 1);
      if (event.error) failures += 1;
    }
    const parts = [...counts.entries()].map(([name, count]) => int(count) + " × " + name);
    if (children) parts.unshift(int(children) + " child node" + (children === 1 ? "" : "s"));
    const summary = el("span", "calls-summary");
    add(summary, "calls made by this code: " + parts.join(", "));
    if (failures) summary.appendChild(badge(int(failures) + " failed", "bad"));
    let render = null;
    const details = RLM.lazyDetails(summary, () => {
      const list = el("div", "calls");
      let shown = 0;
      const more = el("button", "more block", "");
      more.type = "button";
      render = (count) => {
        while (shown < Math.min(count, items.length)) list.appendChild(itemView(items[shown++]));
        more.textContent = "show more (" + int(items.length - shown) + " remaining)";
        more.hidden = shown >= items.length;
      };
      more.addEventListener("click", () => render(shown + CALLS_AT_ONCE));
      render(CALLS_AT_ONCE);
      const wrap = el("div");
      add(wrap, list, more);
      return wrap;
    }, "calls-box", items.length <= 12);
    details.showItem = (item) => {
      details.ensure();
      details.open = true;
      render(items.indexOf(item) + 1);
    };
    for (const item of items) item.group = details;
    return details;
  }

  function itemView(item) {
    if (item.kind === "child") return nodeView(item.node, false);
    const event = events[item.index];
    const type = String(event.type);
    if (type === "sub_call") return remember(item.index, subCallView(event));
    if (type === "exec") return remember(item.index, execView(event, item.index).box);
    return remember(item.index, genericView(event));
  }

  function subCallView(event) {
    const row = el("div", "subcall" + (event.error ? " failed" : ""));
    const tokens = event.input_tokens !== undefined ? int(event.input_tokens) + " → " + int(event.output_tokens) + " tokens" : null;
    add(row, el("span", "subcall-kind", label(event)),
      el("span", "subcall-meta", [event.model ? str(event.model) : null, int(event.prompt_chars) + " chars", tokens,
        seconds(event.duration_s), event.cost_usd ? usd(event.cost_usd) : null].filter(Boolean).join(" · ")));
    if (event.child !== undefined && event.child !== null && nodes.has(String(event.child))) {
      const link = el("button", "link", "→ node " + str(event.child));
      link.type = "button";
      link.addEventListener("click", () => revealNode(nodes.get(String(event.child)), true));
      row.appendChild(link);
    }
    if (event.stop_reason) row.appendChild(badge(str(event.stop_reason), stopTone(event.stop_reason)));
    if (event.error) row.appendChild(RLM.longText(str(event.error), "error"));
    for (const key of Object.keys(event)) {
      if (!PLUMBING.has(key) && !["kind", "model", "prompt_chars", "duration_s", "error", "stop_reason", "child",
        "input_tokens", "output_tokens", "cost_usd"].includes(key)) {
        row.appendChild(keyValue(key, event[key]));
      }
    }
    return row;
  }

  // Any event this page has no special view for: its type and every field, as text.
  function genericView(event) {
    const box = el("div", "card generic" + (isProblem(event) ? " failed" : ""));
    const head = el("div", "card-head");
    const name = event.name || event.tool || event.tool_name;
    add(head, el("span", "card-kind", label(event) + (name ? ": " + str(name) : "")));
    if (event.duration_s !== undefined) head.appendChild(el("span", "card-meta", seconds(event.duration_s)));
    if (event.error) head.appendChild(badge("error", "bad"));
    box.appendChild(head);
    for (const key of Object.keys(event)) {
      if (PLUMBING.has(key)) continue;
      box.appendChild(keyValue(key, event[key]));
    }
    return box;
  }

  function keyValue(key, value) {
    const row = el("div", "kv");
    const text = str(value);
    row.appendChild(el("span", "kv-key", key));
    if (text.length > 120 || text.includes("\n")) row.appendChild(RLM.longText(text, key === "error" ? "error" : ""));
    else row.appendChild(el("span", "kv-value" + (key === "error" ? " error" : ""), text));
    return row;
  }

  function runEvents() {
    if (!runLevel.length) return null;
    const box = el("section", "run-events");
    box.appendChild(el("h2", null, "other events of the run"));
    for (const index of runLevel) box.appendChild(remember(index, genericView(events[index])));
    return box;
  }

  // ------------------------------------------------------------ reveal and search
  function revealNode(node, scroll) {
    const chain = [];
    for (let at = node; at; at = at.parent !== null ? nodes.get(at.parent) : null) {
      chain.unshift(at);
      if (chain.length > 1000) break;
    }
    for (const step of chain) {
      const parent = step.parent !== null ? nodes.get(step.parent) : null;
      if (parent) {
        const placed = findChildItem(parent, step);
        if (placed && placed.group) placed.group.showItem(placed.item);
      }
      const view = nodeViews.get(step.id);
      if (view) {
        view.ensure();
        view.open = true;
      }
    }
    const view = nodeViews.get(node.id);
    if (view && scroll) {
      view.scrollIntoView({ block: "start" });
      RLM.flash(view);
    }
    return view;
  }

  function findChildItem(parent, child) {
    const search = (items) => items.find((item) => item.kind === "child" && item.node === child);
    let item = search(parent.loose);
    let turn = null;
    if (!item) {
      for (const candidate of parent.turns.values()) {
        item = search(candidate.items);
        if (item) {
          turn = candidate;
          break;
        }
      }
    }
    if (!item) return null;
    if (turn) ensureTurn(parent, turn);
    return { item, group: item.group };
  }

  function ensureTurn(node, turn) {
    const view = nodeViews.get(node.id);
    if (!view) return;
    view.ensure();
    const body = view.querySelector(".node-body");
    if (body && body.showTurn) body.showTurn(turn.iteration);
  }

  function reveal(index) {
    const event = events[index];
    const nodeId = event.node !== undefined && event.node !== null ? String(event.node) : null;
    if (nodeId !== null && nodes.has(nodeId)) {
      const node = nodes.get(nodeId);
      revealNode(node, false);
      for (const turn of node.turns.values()) {
        const item = turn.items.find((candidate) => candidate.index === index);
        if (turn.model.includes(index) || item) {
          ensureTurn(node, turn);
          if (item && item.group) item.group.showItem(item);
        }
      }
    }
    const target = elementOf.get(index);
    if (target) {
      for (let at = target.parentElement; at; at = at.parentElement) if (at.tagName === "DETAILS") at.open = true;
      target.scrollIntoView({ block: "center" });
      RLM.flash(target);
    }
  }

  // Search text of an event: every string and number in it, lower-cased, built on first search.
  let haystacks = null;
  function haystackOf() {
    if (!haystacks) {
      haystacks = events.map((event) => {
        const parts = [];
        for (const [key, value] of Object.entries(event)) {
          if (key === "t" || key === "run_id") continue;
          parts.push(typeof value === "string" ? value : JSON.stringify(value));
        }
        return parts.join("\n").toLowerCase();
      });
    }
    return haystacks;
  }

  function searchBar() {
    const bar = el("div", "searchbar");
    const input = el("input", "search");
    input.type = "search";
    input.placeholder = "Search replies, code, outputs, errors…  ( / )";
    input.setAttribute("aria-label", "search the run");
    const count = el("span", "search-count", "");
    const results = el("div", "search-results");
    results.hidden = true;
    add(bar, input, count, results);
    let timer = 0;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => runSearch(input.value, count, results), 120);
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        input.value = "";
        runSearch("", count, results);
      }
    });
    // A link to the page can carry a search: page.html#search=NameError
    const fromLink = /^#search=(.+)$/.exec(location.hash);
    if (fromLink) {
      try {
        input.value = decodeURIComponent(fromLink[1]);
      } catch (error) {
        input.value = fromLink[1];
      }
      setTimeout(() => runSearch(input.value, count, results), 0);
    }
    document.addEventListener("keydown", (event) => {
      if (event.key === "/" && document.activeElement !== input) {
        event.preventDefault();
        input.focus();
      }
    });
    return bar;
  }

  function runSearch(query, count, results) {
    const needle = query.trim().toLowerCase();
    results.textContent = "";
    if (!needle) {
      count.textContent = "";
      results.hidden = true;
      return;
    }
    const hay = haystackOf();
    const hits = [];
    for (let i = 0; i < hay.length; i++) if (hay[i].includes(needle)) hits.push(i);
    count.textContent = int(hits.length) + " event" + (hits.length === 1 ? "" : "s");
    for (const index of hits.slice(0, 200)) {
      const event = events[index];
      const text = hay[index];
      const at = text.indexOf(needle);
      const original = snippetSource(event);
      const position = original.toLowerCase().indexOf(needle);
      const row = el("button", "search-hit");
      row.type = "button";
      row.appendChild(el("span", "hit-where", where(event)));
      const snippet = el("span", "hit-text");
      if (position >= 0) {
        const from = Math.max(0, position - 60);
        add(snippet, (from ? "…" : "") + original.slice(from, position).replace(/\s+/g, " "),
          el("mark", null, original.slice(position, position + needle.length)),
          original.slice(position + needle.length, position + needle.length + 100).replace(/\s+/g, " "));
      } else {
        snippet.textContent = text.slice(Math.max(0, at - 60), at + 100).replace(/\s+/g, " ");
      }
      row.appendChild(snippet);
      row.addEventListener("click", () => {
        results.hidden = true;
        reveal(index);
      });
      results.appendChild(row);
    }
    if (hits.length > 200) results.appendChild(el("div", "note", int(hits.length - 200) + " more; refine the search"));
    results.hidden = hits.length === 0;
  }

  function snippetSource(event) {
    return Object.entries(event)
      .filter(([key]) => key !== "t" && key !== "run_id")
      .map(([, value]) => (typeof value === "string" ? value : JSON.stringify(value)))
      .join("  ");
  }

  // ------------------------------------------------------------ assemble
  document.title = "RLM trajectory" + (meta && meta.run_id ? " " + str(meta.run_id) : "");
  const top = el("div", "topbar");
  add(top, el("span", "brand", "rlm-sandbox"), searchBar());
  app.appendChild(top);
  const main = el("main");
  add(main, header(), problemList(), totals(), timeline());
  const tree = el("section", "tree");
  tree.appendChild(el("h2", null, "nodes and turns"));
  if (!roots.length) tree.appendChild(el("div", "note", "no node_start events in this file"));
  roots.forEach((root, i) => tree.appendChild(nodeView(root, i === 0)));
  main.appendChild(tree);
  const extra = runEvents();
  if (extra) main.appendChild(extra);
  app.appendChild(main);
  void document.body.offsetHeight; // style and layout of the first view count too
  const elapsed = performance.now();
  // A link to one event (page.html#event=123) opens the way to it.
  const linked = /^#event=(\d+)$/.exec(location.hash);
  if (linked && events[Number(linked[1])]) setTimeout(() => reveal(Number(linked[1])), 0);
  document.body.dataset.renderMs = String(Math.round(elapsed - started));
  document.body.dataset.readyMs = String(Math.round(elapsed));
  document.body.dataset.ready = "1";
  const foot = el("footer", "foot", int(events.length) + " events · drawn in " + Math.round(elapsed) + " ms after opening · "
    + "rendered offline; nothing in this page loads from the network");
  app.appendChild(foot);
})();
