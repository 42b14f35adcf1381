// Shared by every page. All data is untrusted: it reaches the DOM only as text
// (textContent, createTextNode, element.title), never as markup.
"use strict";

const RLM = (function () {
  function el(tag, cls, text) {
    const node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function add(parent, ...children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) {
        add(parent, ...child);
        continue;
      }
      parent.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return parent;
  }

  function num(value) {
    const n = Number(value);
    return Number.isFinite(n) ? n : 0;
  }

  function str(value) {
    if (value === null || value === undefined) return "";
    return typeof value === "string" ? value : JSON.stringify(value, null, 2);
  }

  const intFormat = new Intl.NumberFormat("en-US");
  function int(value) {
    return intFormat.format(Math.round(num(value)));
  }

  function seconds(value) {
    const s = num(value);
    if (s === 0) return "0 s";
    if (s < 0.001) return (s * 1e6).toFixed(0) + " µs";
    if (s < 1) return (s * 1000).toFixed(s < 0.01 ? 2 : 0) + " ms";
    if (s < 60) return s.toFixed(s < 10 ? 2 : 1) + " s";
    const m = Math.floor(s / 60);
    return m + " min " + Math.round(s - m * 60) + " s";
  }

  function usd(value) {
    const v = num(value);
    return "$" + (v === 0 ? "0" : v < 0.01 ? v.toFixed(5) : v.toFixed(4));
  }

  function badge(text, tone) {
    const node = el("span", "badge " + (tone || ""), text);
    node.title = String(text);
    return node;
  }

  function stopTone(reason) {
    if (reason === "final") return "ok";
    if (reason === "error" || reason === "interrupted") return "bad";
    if (reason === undefined || reason === null || reason === "") return "muted";
    return "warn";
  }

  // ------------------------------------------------------------ Python highlighter
  const KEYWORDS = new Set(
    ("False None True and as assert async await break class continue def del elif else except " +
      "finally for from global if import in is lambda nonlocal not or pass raise return try while " +
      "with yield match case").split(" ")
  );
  const BUILTINS = new Set(
    ("print len range enumerate zip map filter sorted reversed sum min max abs any all list dict set " +
      "tuple str int float bool open isinstance type repr round hasattr getattr setattr iter next " +
      "super object Exception ValueError KeyError TypeError format chr ord divmod hash id input " +
      "self").split(" ")
  );
  const RLM_NAMES = new Set(
    ("context llm_query llm_query_batched rlm_query rlm_query_batched FINAL FINAL_VAR SHOW_VARS").split(" ")
  );
  const TOKEN = new RegExp(
    [
      "(#[^\\n]*)", // 1 comment
      "((?:[rRbBuUfF]{1,2})?(?:\"\"\"[\\s\\S]*?(?:\"\"\"|$(?![\\s\\S]))|'''[\\s\\S]*?(?:'''|$(?![\\s\\S]))|\"(?:\\\\.|[^\"\\\\\\n])*\"?|'(?:\\\\.|[^'\\\\\\n])*'?))", // 2 string
      "(@[A-Za-z_][\\w.]*)", // 3 decorator
      "(\\b\\d[\\d_]*(?:\\.\\d[\\d_]*)?(?:[eE][+-]?\\d+)?j?\\b|\\b0[xXoObB][\\da-fA-F_]+\\b)", // 4 number
      "([A-Za-z_][A-Za-z0-9_]*)", // 5 name
    ].join("|"),
    "g"
  );
  const HIGHLIGHT_LIMIT = 60000;

  function highlightPython(code, into) {
    if (code.length > HIGHLIGHT_LIMIT) {
      into.appendChild(document.createTextNode(code));
      return into;
    }
    let last = 0;
    let previousName = "";
    let plain = "";
    const flush = () => {
      if (plain) into.appendChild(document.createTextNode(plain));
      plain = "";
    };
    const span = (cls, text) => {
      flush();
      into.appendChild(el("span", cls, text));
    };
    TOKEN.lastIndex = 0;
    let match;
    while ((match = TOKEN.exec(code)) !== null) {
      if (match[0].length === 0) {
        TOKEN.lastIndex++;
        continue;
      }
      plain += code.slice(last, match.index);
      last = match.index + match[0].length;
      if (match[1]) span("tok-comment", match[1]);
      else if (match[2]) span("tok-string", match[2]);
      else if (match[3]) span("tok-decorator", match[3]);
      else if (match[4]) span("tok-number", match[4]);
      else {
        const name = match[5];
        if (KEYWORDS.has(name)) span("tok-keyword", name);
        else if (previousName === "def" || previousName === "class") span("tok-def", name);
        else if (RLM_NAMES.has(name)) span("tok-rlm", name);
        else if (BUILTINS.has(name)) span("tok-builtin", name);
        else plain += name;
        previousName = name;
        continue;
      }
      previousName = "";
    }
    plain += code.slice(last);
    flush();
    return into;
  }

  function codeBlock(code, lang) {
    const pre = el("pre", "code");
    const inner = el("code");
    const language = (lang || "").toLowerCase();
    if (language === "" || language === "repl" || language === "python" || language === "py") {
      highlightPython(code, inner);
    } else {
      inner.textContent = code;
    }
    if (lang) pre.appendChild(el("span", "code-lang", lang));
    pre.appendChild(inner);
    return pre;
  }

  // A model reply: prose as text, ``` fences as highlighted code.
  const FENCE = /```([\w+-]*)[^\n]*\n([\s\S]*?)(?:```|$(?![\s\S]))/g;
  function reply(text) {
    const box = el("div", "reply");
    let last = 0;
    FENCE.lastIndex = 0;
    let match;
    while ((match = FENCE.exec(text)) !== null) {
      const prose = text.slice(last, match.index);
      if (prose.trim()) box.appendChild(longText(prose.trim(), "prose"));
      box.appendChild(codeBlock(match[2].replace(/\n$/, ""), match[1] || "text"));
      last = match.index + match[0].length;
      if (match[0].length === 0) FENCE.lastIndex++;
    }
    const rest = text.slice(last);
    if (rest.trim()) box.appendChild(longText(rest.trim(), "prose"));
    return box;
  }

  // Long text: the first part at once, the rest on request; the log's own cut marks
  // ("[... N more characters not logged]") are shown as marks, not as text.
  const SHOW_CHARS = 8000;
  const CUT_MARK = /\[\.\.\. ([\d,]+) more characters not logged\]$/;
  function longText(text, cls) {
    const pre = el("pre", "text " + (cls || ""));
    let body = String(text);
    let cut = null;
    const mark = CUT_MARK.exec(body);
    if (mark) {
      body = body.slice(0, mark.index);
      cut = el("span", "cut", "✂ " + mark[1] + " more characters were not logged");
    }
    if (body.length > SHOW_CHARS) {
      pre.appendChild(document.createTextNode(body.slice(0, SHOW_CHARS)));
      const more = el("button", "more", "… show " + int(body.length - SHOW_CHARS) + " more characters");
      more.type = "button";
      more.addEventListener("click", () => {
        more.replaceWith(document.createTextNode(body.slice(SHOW_CHARS)));
      });
      pre.appendChild(more);
    } else {
      pre.appendChild(document.createTextNode(body));
    }
    if (cut) add(pre, "\n", cut);
    return pre;
  }

  // A collapsible section whose body is built the first time it opens.
  function lazyDetails(summary, build, cls, open) {
    const details = el("details", cls);
    const head = el("summary");
    add(head, summary);
    details.appendChild(head);
    let built = false;
    const ensure = () => {
      if (!built) {
        built = true;
        const body = build();
        if (body) details.appendChild(body);
      }
    };
    details.addEventListener("toggle", () => {
      if (details.open) ensure();
    });
    details.ensure = ensure;
    if (open) {
      ensure();
      details.open = true;
    }
    return details;
  }

  function data() {
    const holder = document.getElementById("rlm-data");
    try {
      return JSON.parse(holder ? holder.textContent : "null");
    } catch (error) {
      return null;
    }
  }

  function stat(label, value, detail, tone) {
    const card = el("div", "stat " + (tone || ""));
    add(card, el("div", "stat-label", label), el("div", "stat-value", value));
    if (detail) card.appendChild(el("div", "stat-detail", detail));
    return card;
  }

  function flash(node) {
    node.classList.remove("flash");
    void node.offsetWidth;
    node.classList.add("flash");
  }

  return {
    el, add, num, str, int, seconds, usd, badge, stopTone, highlightPython, codeBlock, reply,
    longText, lazyDetails, data, stat, flash,
  };
})();
