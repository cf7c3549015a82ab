/* mixopt dashboard: charts (Chart.js, vendored) and the few interactive bits of each page.
 * Data comes from the page itself (<script type="application/json" id="page-data">) or from the
 * app's JSON routes, called with the session cookie. No inline scripts (strict CSP). */
(function () {
  "use strict";

  // -- helpers ------------------------------------------------------------------------------
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));

  function pageData() {
    const node = document.getElementById("page-data");
    return node ? JSON.parse(node.textContent) : {};
  }

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else if (k.startsWith("data-") || k === "href" || k === "title" || k === "type" || k === "id" ||
               k === "for" || k === "min" || k === "max" || k === "step" || k === "value" || k === "aria-label") {
        node.setAttribute(k, v);
      } else node[k] = v;
    }
    for (const c of children || []) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    return node;
  }

  function fmt(v, digits) {
    if (v === null || v === undefined || !Number.isFinite(Number(v))) return "—";
    return Number(v).toPrecision(digits || 4);
  }

  function human(v) {
    if (v === null || v === undefined || !Number.isFinite(Number(v))) return "—";
    const units = [["T", 1e12], ["B", 1e9], ["M", 1e6], ["k", 1e3]];
    for (const [u, s] of units) if (Math.abs(v) >= s) return Number((v / s).toPrecision(3)) + u;
    return String(v);
  }

  function when(iso) {
    return iso ? String(iso).slice(0, 16).replace("T", " ") : "—";
  }

  class ApiError extends Error {
    constructor(message, status) { super(message); this.status = status; }
  }

  async function api(url, options) {
    const opts = Object.assign({ credentials: "same-origin" }, options || {});
    opts.headers = Object.assign({ Accept: "application/json" }, opts.headers || {});
    const method = (opts.method || "GET").toUpperCase();
    if (method !== "GET" && method !== "HEAD") {
      // double-submit CSRF token (app/api/csrf.py): the cookie set at login, echoed in a header
      const m = document.cookie.match(/(?:^|;\s*)mixopt_csrf=([^;]+)/);
      if (m) opts.headers["X-CSRF-Token"] = decodeURIComponent(m[1]);
    }
    const response = await fetch(url, opts);
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    if (!response.ok) {
      throw new ApiError((body && body.detail) || (response.status + " " + response.statusText), response.status);
    }
    return body;
  }

  /** Distinct colours for n series (golden-angle hues). */
  function color(i, alpha) {
    const hue = (i * 137.508 + 200) % 360;
    return "hsla(" + hue.toFixed(1) + ", 65%, 45%, " + (alpha === undefined ? 1 : alpha) + ")";
  }

  const FIXED_COLORS = { natural: "hsla(0, 0%, 35%, 1)", uniform: "hsla(0, 0%, 65%, 1)" };

  function shortName(name) {
    return String(name).replace(/^the_pile_/, "").replace(/^metric\//, "").replace(/_val_loss$/, "");
  }

  /** Deterministic jitter in [-0.3, 0.3] from two integers. */
  function jitter(a, b) {
    const x = Math.sin(a * 12.9898 + b * 78.233) * 43758.5453;
    return (x - Math.floor(x) - 0.5) * 0.6;
  }

  function median(values) {
    if (!values.length) return null;
    const s = values.slice().sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  }

  function chart(id, config) {
    const canvas = typeof id === "string" ? document.getElementById(id) : id;
    if (!canvas || typeof Chart === "undefined") return null;
    const existing = Chart.getChart(canvas);
    if (existing) existing.destroy();
    return new Chart(canvas, config);
  }

  function show(node, visible) {
    if (node) node.classList.toggle("hidden", !visible);
  }

  function poll(fn, ms) {
    let timer = null;
    let stopped = false;
    const tick = async () => {
      if (stopped) return;
      if (!document.hidden) {
        try { await fn(); } catch (e) { console.warn("poll failed:", e.message || e); }
      }
      if (!stopped) timer = setTimeout(tick, ms);
    };
    timer = setTimeout(tick, ms);
    window.addEventListener("pagehide", () => { stopped = true; clearTimeout(timer); });
  }

  // -- pages --------------------------------------------------------------------------------
  const pages = {};

  pages.overview = async function (data) {
    let payload;
    try {
      payload = await api("/dashboard/api/projects/" + data.project_id + "/runs");
    } catch (e) {
      const tbody = $("#runs-table tbody");
      tbody.replaceChildren(el("tr", {}, [el("td", { colSpan: 9, className: "alert", text: e.message })]));
      return;
    }
    coverageChart(payload, data.natural);
    runsTable(payload, data.project_id);
  };

  function coverageChart(payload, natural) {
    const domains = payload.domains;
    const runs = payload.runs;
    if (!runs.length || !domains.length) {
      show($("#coverage-empty"), true);
      show($("#coverage-chart").parentElement, false);
      return;
    }
    const step = Math.max(1, Math.ceil(runs.length / 600)); // plot at most ~600 runs' dots
    const dots = [];
    runs.forEach((run, r) => {
      if (r % step) return;
      run.mixture.forEach((w, d) => dots.push({ x: d + jitter(run.id, d), y: w, run: run.id }));
    });
    const medians = domains.map((_, d) => ({ x: d, y: median(runs.map((run) => run.mixture[d])) }));
    const datasets = [
      { label: "runs", data: dots, pointRadius: 1.6, backgroundColor: color(0, 0.28), borderWidth: 0 },
      { label: "median", data: medians, pointStyle: "line", pointRadius: 14, borderWidth: 3,
        borderColor: "hsla(20, 85%, 45%, 1)", backgroundColor: "hsla(20, 85%, 45%, 1)" },
    ];
    if (natural) {
      datasets.push({ label: "natural", data: domains.map((d, i) => ({ x: i, y: natural[d] || 0 })),
        pointStyle: "triangle", pointRadius: 6, backgroundColor: FIXED_COLORS.natural, borderColor: FIXED_COLORS.natural });
    }
    chart("coverage-chart", {
      type: "scatter",
      data: { datasets: datasets },
      options: {
        maintainAspectRatio: false,
        scales: {
          x: { type: "linear", min: -0.5, max: domains.length - 0.5, grid: { display: false },
               // one tick per domain, at its integer position (with min -0.5 Chart.js put the
               // ticks at -0.5, 0.5, ... and every label was blank)
               afterBuildTicks: (axis) => { axis.ticks = domains.map((_, i) => ({ value: i })); },
               ticks: { stepSize: 1, autoSkip: false, maxRotation: 60, minRotation: 30,
                        callback: (v) => (Number.isInteger(v) && domains[v] !== undefined ? shortName(domains[v]) : "") } },
          y: { min: 0, title: { display: true, text: "weight" } },
        },
        plugins: {
          tooltip: { callbacks: { label: (ctx) => {
            const p = ctx.raw;
            const d = domains[Math.round(p.x)];
            return (p.run ? "run " + p.run + " · " : ctx.dataset.label + " · ") + shortName(d) + ": " + fmt(p.y, 3);
          } } },
        },
      },
    });
    const title = $("#coverage-chart").closest(".card").querySelector("p.muted");
    if (payload.truncated && title) title.append(" Showing the newest " + runs.length + " of " + payload.total + " runs.");
  }

  function runsTable(payload, projectId) {
    const domains = payload.domains;
    const state = { key: "id", dir: 1, filter: "", status: "", page: 0, per: 25 };
    const tbody = $("#runs-table tbody");
    const info = $("#runs-page-info");

    function rows() {
      const f = state.filter.toLowerCase();
      let out = payload.runs.filter((r) => (!state.status || r.status === state.status) && (!f ||
        (String(r.id) + " " + r.name + " " + r.origin + " " + r.tags.join(" ")).toLowerCase().includes(f)));
      const k = state.key;
      out = out.slice().sort((a, b) => {
        const x = a[k], y = b[k];
        if (x === y) return a.id - b.id;
        if (x === null || x === undefined) return 1; // missing values last either way
        if (y === null || y === undefined) return -1;
        return (x < y ? -1 : 1) * state.dir;
      });
      return out;
    }

    function topDomains(mixture) {
      return mixture.map((w, i) => [w, i]).sort((a, b) => b[0] - a[0]).slice(0, 3).filter((p) => p[0] > 0)
        .map((p) => shortName(domains[p[1]]) + " " + p[0].toFixed(2)).join(", ");
    }

    const checked = new Set();
    const overlay = $("#runs-overlay");
    function overlayBox(id) {
      const box = el("input", { type: "checkbox", className: "overlay-pick", value: String(id), "aria-label": "overlay run " + id });
      box.checked = checked.has(id);
      box.addEventListener("change", () => {
        if (box.checked) checked.add(id); else checked.delete(id);
        const ids = Array.from(checked);
        overlay.href = "/dashboard/projects/" + projectId + "/curves?runs=" + ids.join(",");
        overlay.textContent = "Overlay curves (" + ids.length + ")";
        overlay.classList.toggle("disabled", ids.length === 0);
      });
      return box;
    }

    function render() {
      const all = rows();
      const pages = Math.max(1, Math.ceil(all.length / state.per));
      state.page = Math.min(state.page, pages - 1);
      const slice = all.slice(state.page * state.per, (state.page + 1) * state.per);
      tbody.replaceChildren(...slice.map((r) => el("tr", { "data-run-id": r.id }, [
        el("td", { className: "num" }, [overlayBox(r.id), " ",
                                        el("a", { href: "/dashboard/projects/" + projectId + "/runs/" + r.id, text: String(r.id) })]),
        el("td", { text: r.name }),
        el("td", {}, [el("span", { className: "badge " + r.status, text: r.status })]),
        el("td", { text: r.origin }),
        el("td", { className: "num", text: fmt(r.objective, 5) }),
        el("td", { className: "num", text: human(r.model_params) }),
        el("td", { className: "num", text: human(r.train_tokens) }),
        el("td", { className: "small", text: topDomains(r.mixture) }),
        el("td", { className: "small", text: r.tags.join(", ") }),
      ])));
      if (!slice.length) tbody.append(el("tr", {}, [el("td", { colSpan: 9, className: "empty", text: "No runs match." })]));
      info.textContent = "page " + (state.page + 1) + " of " + pages + " · " + all.length + " runs" +
        (payload.truncated ? " (newest " + payload.runs.length + " of " + payload.total + ")" : "");
      $("#runs-prev").disabled = state.page === 0;
      $("#runs-next").disabled = state.page >= pages - 1;
      $$("#runs-table th[data-sort]").forEach((th) => {
        th.classList.toggle("sorted-asc", th.dataset.sort === state.key && state.dir === 1);
        th.classList.toggle("sorted-desc", th.dataset.sort === state.key && state.dir === -1);
      });
    }

    $$("#runs-table th[data-sort]").forEach((th) => th.addEventListener("click", () => {
      const k = th.dataset.sort;
      state.dir = state.key === k ? -state.dir : 1;
      state.key = k;
      render();
    }));
    $("#runs-filter").addEventListener("input", (e) => { state.filter = e.target.value; state.page = 0; render(); });
    $("#runs-status").addEventListener("change", (e) => { state.status = e.target.value; state.page = 0; render(); });
    $("#runs-prev").addEventListener("click", () => { state.page -= 1; render(); });
    $("#runs-next").addEventListener("click", () => { state.page += 1; render(); });
    render();
  }

  function mixtureColors(label, i) {
    return FIXED_COLORS[label] || color(i + 1, 0.85);
  }

  pages.mixtures = function (data) {
    if (!data.mixtures.length) return;
    chart("mixtures-chart", {
      type: "bar",
      data: {
        labels: data.domains.map(shortName),
        datasets: data.mixtures.map((m, i) => ({
          label: m.label, data: data.domains.map((d) => m.mixture[d] || 0),
          backgroundColor: mixtureColors(m.label, i), borderWidth: 0,
        })),
      },
      options: {
        maintainAspectRatio: false,
        scales: { x: { ticks: { autoSkip: false, maxRotation: 60, minRotation: 30 } },
                  y: { beginAtZero: true, title: { display: true, text: "weight" } } },
        plugins: { tooltip: { callbacks: { label: (ctx) => ctx.dataset.label + ": " + fmt(ctx.raw, 3) } } },
      },
    });
  };

  pages.fits = function (data) {
    followJob(data);
    const byId = {};
    data.fits.forEach((f) => { byId[f.id] = f; });
    $$("canvas.fit-scatter").forEach((canvas) => {
      const f = byId[canvas.dataset.fitId];
      if (!f || !f.points.length) return;
      const xs = f.points.map((p) => p.actual).concat(f.points.map((p) => p.predicted));
      const lo = Math.min(...xs), hi = Math.max(...xs);
      const pad = (hi - lo) * 0.04 || 0.01;
      chart(canvas, {
        type: "scatter",
        data: { datasets: [
          { label: "held-out runs", data: f.points.map((p) => ({ x: p.actual, y: p.predicted, run: p.run_id })),
            pointRadius: 2.2, backgroundColor: color(f.id, 0.55), borderWidth: 0 },
          { label: "y = x", type: "line", data: [{ x: lo - pad, y: lo - pad }, { x: hi + pad, y: hi + pad }],
            borderColor: "hsla(0, 0%, 40%, 0.8)", borderDash: [5, 4], borderWidth: 1, pointRadius: 0 },
        ] },
        options: {
          maintainAspectRatio: false,
          scales: { x: { min: lo - pad, max: hi + pad, title: { display: true, text: "actual" } },
                    y: { min: lo - pad, max: hi + pad, title: { display: true, text: "predicted" } } },
          plugins: { tooltip: { callbacks: { label: (ctx) => (ctx.raw.run ? "run " + ctx.raw.run + ": " : "") +
            "actual " + fmt(ctx.raw.x, 4) + ", predicted " + fmt(ctx.raw.y, 4) } } },
        },
      });
    });
  };

  /** Move weight i to v and rescale the others proportionally so the sum stays 1. */
  function moveOnSimplex(w, i, v) {
    v = Math.min(1, Math.max(0, v));
    if (w.length === 1) return [1];
    const rest = w.reduce((s, x, j) => (j === i ? s : s + x), 0);
    return w.map((x, j) => {
      if (j === i) return v;
      return rest > 1e-12 ? (x * (1 - v)) / rest : (1 - v) / (w.length - 1);
    });
  }
  window.mixoptMoveOnSimplex = moveOnSimplex; // exposed for tests

  pages.whatif = function (data) {
    const select = $("#whatif-fit");
    if (!select) return;
    const domains = data.domains;
    let w = data.start.slice();
    let seq = 0;
    let timer = null;
    const sliders = [];
    const outputs = [];
    const box = $("#whatif-sliders");
    domains.forEach((d, i) => {
      const input = el("input", { type: "range", min: "0", max: "1", step: "any", id: "w-" + i,
                                  "data-domain": d, "aria-label": d });
      const out = el("output", { className: "num", "for": "w-" + i });
      input.addEventListener("input", () => { w = moveOnSimplex(w, i, Number(input.value)); sync(); });
      sliders.push(input);
      outputs.push(out);
      box.append(el("div", { className: "slider-row" }, [el("label", { "for": "w-" + i, text: shortName(d), title: d }), input, out]));
    });
    const presets = $("#whatif-presets");
    data.presets.forEach((p) => {
      const b = el("button", { type: "button", className: "small", text: p.label });
      b.addEventListener("click", () => { w = domains.map((d) => p.mixture[d] || 0); sync(); });
      presets.append(b, " ");
    });

    const mix = chart("whatif-chart", {
      type: "bar",
      data: { labels: domains.map(shortName), datasets: [
        { label: "what-if", data: w.slice(), backgroundColor: color(3, 0.85) },
      ].concat(data.natural ? [{ label: "natural", data: domains.map((d) => data.natural[d] || 0),
                                  backgroundColor: FIXED_COLORS.natural }] : []) },
      options: { maintainAspectRatio: false, scales: { y: { beginAtZero: true, suggestedMax: 0.5 },
                 x: { ticks: { autoSkip: false, maxRotation: 60, minRotation: 30 } } } },
    });

    function sync() {
      w.forEach((x, i) => { sliders[i].value = String(x); outputs[i].textContent = x.toFixed(3); });
      availability(data.availability, domains, w);
      if (mix) { mix.data.datasets[0].data = w.slice(); mix.update("none"); }
      clearTimeout(timer);
      timer = setTimeout(predict, 120);
    }

    async function predict() {
      const mine = ++seq;
      const mixture = {};
      domains.forEach((d, i) => { mixture[d] = w[i]; });
      const mixtures = [mixture];
      if (data.natural) mixtures.push(data.natural);
      const target = $("#whatif-prediction");
      const err = $("#whatif-error");
      target.classList.add("pending");
      try {
        const res = await api("/v1/projects/" + data.project_id + "/fits/" + select.value + "/predict", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ mixtures: mixtures, normalize: true }),
        });
        if (mine !== seq) return; // a newer request is on its way
        const value = res.objective[0];
        target.textContent = fmt(value, 5);
        target.dataset.value = String(value);
        const parts = [];
        if (res.std && res.std[0] !== null && res.std[0] !== undefined && !Array.isArray(res.std[0])) parts.push("± " + fmt(res.std[0], 3) + " (1 s.d.)");
        if (res.objective.length > 1) {
          const delta = value - res.objective[1];
          parts.push((delta <= 0 ? "" : "+") + fmt(delta, 3) + " vs natural (" + fmt(res.objective[1], 5) + ")");
        }
        $("#whatif-std").textContent = parts.join(" · ");
        const targets = res.targets || [];
        const table = $("#whatif-targets");
        table.replaceChildren(...targets.map((t, k) => el("tr", {}, [el("td", { text: t }), el("td", { className: "num", text: fmt(res.predictions[0][k], 5) })])));
        show($("#whatif-targets-box"), targets.length > 1);
        show(err, false);
      } catch (e) {
        if (mine !== seq) return;
        err.textContent = "prediction failed: " + e.message;
        show(err, true);
      } finally {
        if (mine === seq) target.classList.remove("pending");
      }
    }

    select.addEventListener("change", predict);
    sync();
  };

  /** What-if availability: epochs per domain at the target tokens against each cap, domains
   * with no token count or no tokens at all, group totals. The rules are Python's
   * (Constraints.epoch_limits, served as a.limits: per domain the weight above which it warns);
   * this only compares the sliders' weights with them and writes the result. */
  function availability(a, domains, w) {
    const box = $("#whatif-availability");
    if (!a || !box) return;
    const warnings = [];
    const rows = [];
    const known = (v) => v !== null && v !== undefined;
    domains.forEach((d, i) => {
      const x = w[i];
      const tokens = a.tokens[d];
      const lim = (a.limits || {})[d] || {};
      const cap = lim.cap;
      const epochs = known(lim.epochs_per_weight) ? x * lim.epochs_per_weight : null;
      const exceeds = known(lim.max_weight) && x > lim.max_weight;
      const over = exceeds && !lim.unavailable;
      if (exceeds && lim.unavailable === "no token count") {
        warnings.push(d + ": weight " + x.toFixed(3) + " but no token count (availability unknown)");
      } else if (exceeds && lim.unavailable === "no tokens") {
        warnings.push(d + ": weight " + x.toFixed(3) + " but the project has no tokens of it");
      } else if (over) {
        warnings.push(d + ": " + epochs.toFixed(2) + " epochs at weight " + x.toFixed(3) + ", " +
                      (epochs / cap).toFixed(1) + "x its " + String(cap) + "-epoch cap");
      }
      rows.push(el("tr", { "data-domain": d, className: over ? "over" : "" }, [
        el("td", { text: d }), el("td", { className: "num", text: x.toFixed(3) }),
        el("td", { className: "num", text: known(tokens) ? human(tokens) : "—" }),
        el("td", { className: "num" + (over ? " over" : ""), text: epochs === null ? "—" : fmt(epochs, 3) + "×" }),
        el("td", { className: "num", text: known(cap) ? String(cap) : "—" }),
      ]));
    });
    $("#whatif-epochs-note").textContent = a.target_tokens
      ? "Epochs = weight × " + human(a.target_tokens) + " target tokens / domain tokens, against each domain's cap."
      : "Set constraints.target_tokens (and each domain's token_count) to see the epochs this mixture implies.";
    $("#whatif-warnings").replaceChildren(...warnings.map((t) => el("div", { className: "warning", text: t })));
    box.dataset.warnings = String(warnings.length);
    const table = $("#whatif-epochs");
    table.querySelector("tbody").replaceChildren(...rows);
    show(table, !!a.target_tokens || warnings.length > 0);
    const groups = Object.entries(a.groups || {});
    const gtable = $("#whatif-groups");
    gtable.querySelector("tbody").replaceChildren(...groups.map(([g, members]) => el("tr", { "data-group": g }, [
      el("td", { text: g }),
      el("td", { className: "num", text: members.reduce((t, m) => t + (w[domains.indexOf(m)] || 0), 0).toFixed(3) }),
    ])));
    show(gtable, groups.length > 0);
  }

  pages.compare = function (data) {
    if (!data.mixtures.length) return;
    pages.mixtures(data);
  };

  pages.pareto = function (data) {
    const p = data.pareto;
    if (!p) return;
    const kinds = { reference: ["hsla(0, 75%, 45%, 1)", "crossRot", 11], recommendation: ["hsla(140, 60%, 30%, 1)", "star", 10] };
    const datasets = [
      { label: "candidates (" + p.points.length + ")", data: p.points, pointRadius: 1.8,
        backgroundColor: "hsla(210, 40%, 55%, 0.35)", borderWidth: 0, order: 3 },
      { label: "Pareto front (" + p.front.length + ")", type: "line", data: p.front, borderColor: "hsla(28, 90%, 45%, 1)",
        backgroundColor: "hsla(28, 90%, 45%, 1)", pointRadius: 3.5, borderWidth: 2, stepped: false, order: 1 },
    ];
    p.marked.forEach((m) => {
      const [c, style, r] = kinds[m.kind] || kinds.recommendation;
      datasets.push({ label: m.label, data: [{ x: m.x, y: m.y }], pointStyle: style, pointRadius: r, borderWidth: 3,
                      borderColor: c, backgroundColor: c, order: 0 });
    });
    chart("pareto-chart", {
      type: "scatter",
      data: { datasets: datasets },
      options: {
        maintainAspectRatio: false, parsing: false,
        scales: { x: { title: { display: true, text: shortName(p.x) + " (predicted)" } },
                  y: { title: { display: true, text: shortName(p.y) + " (predicted)" } } },
        plugins: { tooltip: { callbacks: { label: (ctx) => ctx.dataset.label + ": " + fmt(ctx.raw.x, 4) + ", " + fmt(ctx.raw.y, 4) } } },
      },
    });
  };

  pages.curves = function (data) {
    if (!data.series.length) return;
    chart("overlay-chart", {
      type: "line",
      data: { datasets: data.series.map((s, i) => ({
        label: s.label, data: s.points, borderColor: color(i), backgroundColor: color(i),
        pointRadius: 0, borderWidth: 1.6, tension: 0.2,
      })) },
      options: { maintainAspectRatio: false, parsing: false,
                 scales: { x: { type: "linear", title: { display: true, text: data.x } },
                           y: { title: { display: true, text: shortName(data.metric) } } } },
    });
  };

  /** The job a form of the page started: its state and progress, live, then where its result is. */
  function followJob(data) {
    const box = $("#started");
    if (!data.job || !box) return;
    const done = ["succeeded", "failed", "cancelled"];
    async function refresh() {
      const j = await api("/v1/jobs/" + data.job);
      box.querySelector("progress").value = j.progress || 0;
      box.querySelector(".job-state").textContent = j.state;
      box.querySelector(".job-state").className = "badge job-state " + j.state;
      box.querySelector(".job-message").textContent = j.error || j.message || "";
      const result = j.result || {};
      const link = box.querySelector(".job-result");
      if (j.state === "succeeded" && result.recommendation_id) {
        link.href = "/dashboard/projects/" + j.project_id + "/mixtures#rec-" + result.recommendation_id;
        link.textContent = "recommendation #" + result.recommendation_id;
      } else if (j.state === "succeeded" && result.fit_id) {
        link.href = "/dashboard/projects/" + j.project_id + "/fits#fit-" + result.fit_id;
        link.textContent = "fit #" + result.fit_id + " (reload to see it in the table)";
      }
      box.dataset.state = j.state;
      return done.includes(j.state);
    }
    let stopped = false;
    const tick = async () => {
      try { stopped = await refresh(); } catch (e) { box.querySelector(".job-message").textContent = e.message; }
      if (!stopped) setTimeout(tick, data.poll_ms || 1000);
    };
    tick();
  }

  pages.run = async function (data) {
    chart("run-mixture-chart", {
      type: "bar",
      data: { labels: data.domains.map(shortName), datasets: [{ label: "weight", data: data.mixture, backgroundColor: color(1, 0.85) }] },
      options: { indexAxis: "y", maintainAspectRatio: false, plugins: { legend: { display: false } },
                 scales: { x: { beginAtZero: true }, y: { ticks: { autoSkip: false } } } },
    });
    let curve;
    try {
      curve = await api("/v1/projects/" + data.project_id + "/runs/" + data.run_id + "/curve");
    } catch (e) {
      const empty = $("#curve-empty");
      empty.textContent = "Could not load the curve: " + e.message;
      show(empty, true);
      return;
    }
    const points = curve.points || [];
    if (!points.length) {
      show($("#curve-empty"), true);
      show($("#curve-chart").parentElement, false);
      return;
    }
    const names = [];
    points.forEach((p) => Object.keys(p.metrics).forEach((k) => { if (!names.includes(k)) names.push(k); }));
    chart("curve-chart", {
      type: "line",
      data: { datasets: names.map((k, i) => ({
        label: shortName(k), data: points.filter((p) => k in p.metrics).map((p) => ({ x: p.step, y: p.metrics[k] })),
        borderColor: color(i), backgroundColor: color(i), pointRadius: 0, borderWidth: 1.5, tension: 0.2,
      })) },
      options: { maintainAspectRatio: false, parsing: false,
                 scales: { x: { type: "linear", title: { display: true, text: "step" } },
                           y: { title: { display: true, text: "loss" } } } },
    });
  };

  pages.online = function (data) {
    if (!data.session_id) return;
    const domains = data.domains;
    const url = "/v1/projects/" + data.project_id + "/online-sessions/" + data.session_id + "/history";
    const lineOpts = (ytitle, extra) => Object.assign({ maintainAspectRatio: false, parsing: false,
      scales: { x: { type: "linear", title: { display: true, text: "step" } }, y: { title: { display: true, text: ytitle } } } }, extra || {});
    const weights = chart("online-weights-chart", {
      type: "line",
      data: { datasets: domains.map((d, i) => ({ label: shortName(d), data: [], stepped: "before", borderColor: color(i),
                                                 backgroundColor: color(i, 0.3), pointRadius: 2, borderWidth: 2 })) },
      options: lineOpts("weight", {}),
    });
    const losses = chart("online-losses-chart", {
      type: "line",
      data: { datasets: [] },
      options: lineOpts("loss", {}),
    });

    async function refresh() {
      const h = await api(url);
      weights.data.datasets.forEach((ds, i) => {
        ds.data = h.weights.map((v) => ({ x: v.step, y: v.weights[domains[i]] || 0 }));
      });
      weights.update("none");
      const series = [];
      domains.forEach((d, i) => {
        for (const [kind, dash] of [["train_losses", []], ["eval_losses", [5, 4]]]) {
          const pts = h.observations.filter((o) => o[kind] && d in o[kind]).map((o) => ({ x: o.step, y: o[kind][d] }));
          if (pts.length) series.push({ label: shortName(d) + (kind === "eval_losses" ? " (eval)" : ""), data: pts,
            borderColor: color(i), backgroundColor: color(i), borderDash: dash, pointRadius: 0, borderWidth: 1.5 });
        }
      });
      losses.data.datasets = series;
      losses.update("none");
      const last = h.weights[h.weights.length - 1];
      $("#online-version").textContent = last ? String(last.version) : "—";
      $("#online-observations").textContent = String(h.observations.length);
      document.body.dataset.onlineVersion = last ? String(last.version) : "0";
    }

    refresh().catch((e) => { $("#online-status").textContent = "could not load: " + e.message; });
    poll(refresh, data.poll_ms || 2000);
  };

  pages.jobs = function (data) {
    const tbody = $("#jobs-table tbody");
    async function refresh() {
      const res = await api("/dashboard/api/jobs");
      const jobs = res.data.slice().sort((a, b) => {
        const active = (j) => (j.state === "running" ? 0 : j.state === "pending" ? 1 : 2);
        return active(a) - active(b);
      });
      tbody.replaceChildren(...jobs.map((j) => el("tr", { "data-job-id": j.id }, [
        el("td", {}, [el("code", { text: j.id.slice(0, 8) })]),
        el("td", { text: j.kind }),
        el("td", {}, [j.project_id ? el("a", { href: "/dashboard/projects/" + j.project_id, text: "#" + j.project_id }) : "—"]),
        el("td", {}, [el("span", { className: "badge " + j.state, text: j.state })]),
        el("td", {}, [el("progress", { max: "1", value: String(j.progress || 0) }), " " + Math.round((j.progress || 0) * 100) + "%"]),
        el("td", { className: "small", text: j.error || j.message || "" }),
        el("td", { className: "small links" }, (j.links || []).flatMap((l, i) =>
          (i ? [", "] : []).concat([el("a", { href: l.href, text: l.label })]))),
        el("td", { text: when(j.created_at) }),
        el("td", { className: "num", text: fmt(j.duration_s, 3) }),
      ])));
      show($("#jobs-empty"), !jobs.length);
      $("#jobs-status").textContent = "live: updated " + new Date().toLocaleTimeString();
    }
    poll(refresh, data.poll_ms || 2000);
  };

  // -- start ------------------------------------------------------------------------------------
  document.addEventListener("DOMContentLoaded", () => {
    if (typeof Chart !== "undefined") {
      Chart.defaults.animation = false;
      Chart.defaults.font.family = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif";
      Chart.defaults.plugins.legend.labels.boxWidth = 12;
    }
    const name = document.body.dataset.page;
    const run = pages[name];
    if (!run) return;
    Promise.resolve(run(pageData())).then(() => { document.body.dataset.ready = "1"; }).catch((e) => {
      console.error("dashboard page " + name + " failed:", e);
      document.body.dataset.ready = "error";
    });
  });
})();
