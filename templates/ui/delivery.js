// mailtrace Delivery page: fetches the JSON routes beside it and draws tables, the trend chart (inline
// SVG) and a subject's timeline. Data is only ever inserted as text (textContent), never as HTML.
(function () {
  "use strict";

  const body = document.body;

  // Airflow's colour mode wins over the system preference: its UI (same origin) puts class "dark" or
  // "light" on its <html> and keeps the choice in localStorage "theme" ("light", "dark" or "system").
  function airflowDocument() {
    try {
      return window.parent !== window ? window.parent.document.documentElement : null;
    } catch (error) {
      return null;
    }
  }

  function applyTheme() {
    const framing = airflowDocument();
    let mode = null;
    if (framing && framing.classList.contains("dark")) mode = "dark";
    else if (framing && framing.classList.contains("light")) mode = "light";
    else {
      try {
        mode = window.localStorage.getItem("theme");
      } catch (error) {
        mode = null;
      }
    }
    document.documentElement.classList.toggle("theme-dark", mode === "dark");
    document.documentElement.classList.toggle("theme-light", mode === "light");
    const dark = mode === "dark" || (mode !== "light" && window.matchMedia("(prefers-color-scheme: dark)").matches);
    document.documentElement.dataset.theme = dark ? "dark" : "light";
  }
  applyTheme();
  window.addEventListener("storage", applyTheme);
  if (airflowDocument()) {
    new MutationObserver(applyTheme).observe(airflowDocument(), { attributes: true, attributeFilter: ["class"] });
  }
  const BASE = body.dataset.base || "";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const COLORS = {
    permanent_failure: "#c53030", complaint: "#97266d", technical_failure: "#dd6b20",
    temporary_failure: "#d69e2e", not_at_provider: "#553c9a", send_failed: "#4a5568",
    invalid_address: "#c53030", suppressed: "#97266d", mailbox_full: "#d69e2e",
    content_rejected: "#dd6b20", no_receipt: "#553c9a", provider_error: "#4a5568", unknown: "#a0aec0",
  };
  const FALLBACK_COLORS = ["#2c7a7b", "#b83280", "#718096", "#975a16"];

  // ---------------------------------------------------------------- helpers

  function api(path, params) {
    const url = new URL(BASE + "/api/" + path, window.location.href);
    Object.entries(params || {}).forEach(([k, v]) => {
      if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
    });
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(
      (response) => {
        if (response.ok) return response.json();
        return response.json().then(
          (payload) => Promise.reject(new Error(errorText(payload.detail) || response.statusText)),
          () => Promise.reject(new Error(response.status + " " + response.statusText))
        );
      }
    );
  }

  // FastAPI says what went wrong as a string, or (for a bad parameter) as a list of {loc, msg}.
  function errorText(detail) {
    if (!detail) return "";
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail.map((d) => {
        const where = (d.loc || []).filter((part) => part !== "query" && part !== "path").join(".");
        return (where ? where + ": " : "") + (d.msg || JSON.stringify(d));
      }).join("; ");
    }
    return JSON.stringify(detail);
  }

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (v === undefined || v === null || v === false) return;
      if (k === "text") node.textContent = v;
      else if (k === "onclick") node.addEventListener("click", v);
      else node.setAttribute(k, v);
    });
    children.flat(Infinity).forEach((child) => {
      if (child === null || child === undefined) return;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    });
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    Object.entries(attrs || {}).forEach(([k, v]) => node.setAttribute(k, v));
    children.forEach((child) => node.append(child));
    return node;
  }

  function when(value) {
    if (!value) return "";
    const d = new Date(value);
    if (isNaN(d)) return String(value);
    return d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
  }

  // A status pill coloured by its value (class s-<status>, or f-<action> for flag changes).
  function badge(status, prefix) {
    const text = status || "unknown";
    return pill(text.replace(/_/g, " "), (prefix || "s-") + text);
  }

  function pill(text, cls) {
    return el("span", { class: "badge " + cls, text: text });
  }

  function subjectLink(id) {
    return el("a", {
      class: "subject", href: "?subject=" + encodeURIComponent(id), text: id,
      onclick: (event) => { event.preventDefault(); lookup(id); },
    });
  }

  function table(columns, rows, emptyText) {
    if (!rows.length) return el("p", { class: "muted", text: emptyText });
    return el(
      "table", {},
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null, text: c.label })))),
      el("tbody", {}, rows.map((row) => el("tr", {}, columns.map((c) => {
        const value = c.render ? c.render(row) : row[c.key];
        return el("td", { class: c.num ? "num" : c.nowrap ? "nowrap" : null },
          value === null || value === undefined ? "" : value);
      }))))
    );
  }

  function fill(id, content) {
    const holder = document.getElementById(id);
    holder.replaceChildren(content);
  }

  function failed(id, error) {
    fill(id, el("p", { class: "error", text: "Could not load: " + error.message }));
  }

  function countText(id, listing) {
    const shown = listing.rows.length;
    document.getElementById(id).textContent =
      "(" + listing.total + (listing.total > shown ? ", newest " + shown + " shown" : "") + ")";
  }

  function colorFor(key, index) {
    return COLORS[key] || FALLBACK_COLORS[index % FALLBACK_COLORS.length];
  }

  // ---------------------------------------------------------------- shareable URL

  // The page's URL carries what is shown (subject, trend window, list filters), so a view can be shared.
  // Inside the Airflow UI the page is framed: the URL in the address bar (the frame's parent, same origin)
  // follows too, and is read on load when the frame's own URL has no state.
  const STATE_FIELDS = {
    days: "trend-days", provider: "trend-provider", since: "trend-since", until: "trend-until",
    stack: "trend-stack", pending_hours: "pending-hours",
    flagged_reason: "flagged-reason", flagged_since: "flagged-since", flagged_until: "flagged-until",
    nap_type: "nap-type", nap_provider: "nap-provider", nap_since: "nap-since", nap_until: "nap-until",
    pending_type: "pending-type", pending_provider: "pending-provider", pending_status: "pending-status",
    pending_since: "pending-since", resend_incident: "resend-incident",
  };
  const state = new URLSearchParams(window.location.search);

  function framedBy() {
    try {
      return window.parent !== window && window.parent.location.origin === window.location.origin ? window.parent : null;
    } catch (error) {
      return null;
    }
  }

  function restoreState() {
    const parent = framedBy();
    if (![...state.keys()].length && parent) {
      new URLSearchParams(parent.location.search).forEach((v, k) => state.set(k, v));
    }
    Object.entries(STATE_FIELDS).forEach(([key, id]) => {
      const value = state.get(key);
      const field = document.getElementById(id);
      if (value !== null && field && [...(field.options || [{ value }])].some((o) => o.value === value)) field.value = value;
    });
  }

  function saveState(changes) {
    Object.entries(STATE_FIELDS).forEach(([key, id]) => {
      const value = document.getElementById(id).value;
      const unused = (key === "since" || key === "until") && document.getElementById("trend-days").value !== "custom";
      if (value && !unused) state.set(key, value);
      else state.delete(key);
    });
    Object.entries(changes || {}).forEach(([k, v]) => (v ? state.set(k, v) : state.delete(k)));
    const query = state.toString() ? "?" + state.toString() : "";
    window.history.replaceState(null, "", window.location.pathname + query);
    const parent = framedBy();
    if (parent) parent.history.replaceState(parent.history.state, "", parent.location.pathname + query);
  }

  // ---------------------------------------------------------------- health

  function age(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    const s = Math.max(0, seconds);
    if (s < 90) return Math.round(s) + " s ago";
    if (s < 90 * 60) return Math.round(s / 60) + " min ago";
    if (s < 36 * 3600) return (s / 3600).toFixed(1) + " h ago";
    return (s / 86400).toFixed(1) + " days ago";
  }

  const LEVEL_WORDS = { green: "OK", amber: "warning", red: "failing", idle: "idle", unknown: "unknown" };

  function level(value) {
    return el("span", { class: "lvl lvl-" + value, "data-level": value, text: LEVEL_WORDS[value] || value });
  }

  function healthItem(lvl, name, ...text) {
    return el("div", { class: "health-item", "data-check": name }, level(lvl), el("span", {}, ...text));
  }

  const PROVIDER_NAMES = { gc_notify: "GC Notify", ses: "Amazon SES" };
  const providerName = (p) => PROVIDER_NAMES[p] || p;

  function renderHealth(h) {
    const dags = h.dags
      ? h.dags.map((d) => healthItem(d.level, "dag:" + d.dag_id, el("code", { text: d.dag_id }),
        " last success " + age(d.last_success_age_seconds) +
        (d.newest_run_state && d.newest_run_state !== "success" ? " · newest run " + d.newest_run_state : "") +
        (d.schedule_seconds ? "" : " · runs when triggered")))
      : [healthItem("unknown", "dags", h.dags_error)];
    const receipts = h.receipts.map((r) => healthItem(r.level, "receipts:" + r.provider,
      el("strong", { text: providerName(r.provider) }),
      " newest receipt " + age(r.newest_receipt_age_seconds) +
      (r.sent_since_newest_receipt ? " · sent since, nothing back yet" : " · nothing sent since") +
      (r.provider === "gc_notify" ? " · list walked " + age(r.list_watermark_age_seconds) : "")));
    const checks = h.deliverability.map((d) => healthItem(d.level, "deliverability:" + d.provider,
      el("strong", { text: providerName(d.provider) }), " ",
      d.problems.length ? d.problems.join("; ")
        : d.sent ? (d.delivery_rate === null ? "no verdicts yet" : (d.delivery_rate * 100).toFixed(1) +
          "% delivered of " + d.with_verdict) + " in the last day"
          : "nothing sent in the last day"));
    const s = h.set_aside;
    const setAside = [
      healthItem(s.ses_dead_letters.level, "dead-letters", s.ses_dead_letters.count +
        " SES message(s) that could not be read (mailtrace.ses_dead_letter)" +
        (s.ses_dead_letters.newest_at ? ", newest " + when(s.ses_dead_letters.newest_at) : "")),
      healthItem(s.notify_quarantine.level, "quarantine", s.notify_quarantine.count +
        " GC Notify notification(s) set aside (mailtrace.notify_quarantine)" +
        (s.notify_quarantine.newest_at ? ", newest " + when(s.notify_quarantine.newest_at) : "")),
      ...s.orphans.map((o) => healthItem(o.level, "orphans:" + o.provider, o.count + " " + providerName(o.provider) +
        " notification(s) with no email in the log (orphans)")),
    ];
    const warnings = h.warnings.length
      ? h.warnings.map((w) => healthItem(w.level, "warning:" + w.kind, w.message,
        el("span", { class: "muted", text: " · last seen " + age(w.last_seen_age_seconds) + ", by " + w.run_count +
          " run(s) since " + when(w.first_seen_at) })))
      : [healthItem("green", "warning", "no warnings from the pipeline's runs")];
    document.getElementById("health-level").replaceChildren(level(h.level));
    document.getElementById("health-checked").textContent = "checked " + when(h.checked_at);
    return el("div", { class: "health-grid", "data-level": h.level },
      el("div", {}, el("h3", { text: "DAG runs" }), dags),
      el("div", {}, el("h3", { text: "Receipts from providers" }), receipts),
      el("div", {}, el("h3", { text: "Deliverability check (now)" }), checks),
      el("div", {}, el("h3", { text: "Set aside" }), setAside),
      el("div", {}, el("h3", { text: "Pipeline warnings" }), warnings));
  }

  function loadHealth() {
    return api("health").then((h) => fill("health-panel", renderHealth(h)),
      (error) => failed("health-panel", error));
  }

  // ---------------------------------------------------------------- trend chart

  let trendData = null;
  const PROVIDER_COLORS = { gc_notify: "#2f855a", ses: "#2b6cb0" };
  const providerColor = (p, i) => PROVIDER_COLORS[p] || FALLBACK_COLORS[i % FALLBACK_COLORS.length];

  function percent(value, places) {
    return (value * 100).toFixed(places) + "%";
  }

  // Integer ticks for counts: 0 and a few round steps up to (at least) max; never "1, 1, 0".
  function countTicks(max) {
    if (max <= 4) return Array.from({ length: Math.max(1, max) + 1 }, (_, i) => i);
    const raw = max / 4;
    const magnitude = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
    const ticks = [];
    for (let t = 0; t < max + step; t += step) ticks.push(t);
    return ticks;
  }

  // A rate axis scaled to the values (and any threshold to draw), in round steps.
  function rateAxis(values, floorAtZero) {
    const known = values.filter((v) => v !== null && v !== undefined);
    if (!known.length) return { lo: 0, hi: 1 };
    let lo = floorAtZero ? 0 : Math.min(...known);
    let hi = Math.max(...known);
    const span = Math.max(hi - lo, hi * 0.2, 0.0001);
    const magnitude = Math.pow(10, Math.floor(Math.log10(span / 4)));
    const step = [1, 2, 5, 10].map((m) => m * magnitude).find((x) => x >= span / 4);
    lo = floorAtZero ? 0 : Math.max(0, Math.floor((lo - step / 2) / step) * step);
    hi = Math.min(1, Math.ceil((hi + step / 2) / step) * step);
    if (hi <= lo) hi = Math.min(1, lo + step);
    return { lo, hi };
  }

  // Enough decimals that the three labels (lo, middle, hi) differ: 75% / 85% / 95%, 0.0025% / 0.005%.
  function axisPlaces(lo, hi) {
    const half = (hi - lo) * 50;
    return half >= 5 ? 0 : Math.max(0, Math.ceil(-Math.log10(half)) + 1);
  }

  function dayLabels(chart, days, x, y) {
    const every = Math.max(1, Math.ceil(days.length / 10));
    days.forEach((d, i) => {
      if (i % every && i !== days.length - 1) return;
      chart.append(svg("text", { x: x(i).toFixed(1), y, "text-anchor": "middle", "font-size": 11 }, d.day.slice(5)));
    });
  }

  function drawTrend() {
    const stack = document.getElementById("trend-stack").value;
    const field = stack === "reason" ? "failures_by_reason" : "failures_by_status";
    const days = trendData.days;
    const providers = trendData.providers.filter((p) => p.days.some((d) => d.sent));
    const keys = [...new Set(days.flatMap((d) => Object.keys(d[field])))].sort();
    const totals = days.reduce((a, d) => ({ sent: a.sent + d.sent, delivered: a.delivered + d.delivered,
      pending: a.pending + d.pending, failed: a.failed + d.failed }), { sent: 0, delivered: 0, pending: 0, failed: 0 });
    const decided = totals.sent - totals.pending;
    const range = trendData.since + " to " + trendData.until + " (" + trendData.timezone + ")";
    document.getElementById("trend-summary").textContent = range + ": " + totals.sent + " sent, " + totals.failed +
      " failed, " + totals.pending + " pending" + (decided ? ", " + percent(totals.delivered / decided, 2) + " delivered" : "");
    if (!totals.sent) {
      fill("trend-chart-holder", el("p", { class: "empty", id: "trend-empty",
        text: "No data: nothing was sent " + (trendData.provider ? "through " + providerName(trendData.provider) + " " : "") +
          "from " + trendData.since + " to " + trendData.until + "." }));
      document.getElementById("trend-legend").replaceChildren();
      fill("reputation-holder", el("span"));
      return;
    }

    const W = 1000, H = 330, left = 60, right = 60, top = 14, rateH = 120, gap = 34, barH = 120;
    const step = (W - left - right) / days.length;
    const x = (i) => left + i * step + step / 2;
    const barTop = top + rateH + gap;
    const ticks = countTicks(Math.max(...days.map((d) => d.failed)));
    const maxFailed = ticks[ticks.length - 1];
    const axis = rateAxis(providers.flatMap((p) => p.days.map((d) => d.delivery_rate)), false);
    const rateY = (r) => top + rateH * (1 - (r - axis.lo) / (axis.hi - axis.lo));
    const places = axisPlaces(axis.lo, axis.hi);
    const chart = svg("svg", {
      id: "trend-chart", viewBox: "0 0 " + W + " " + H, role: "img", "data-days": days.length,
      "data-rate-min": axis.lo.toFixed(4), "data-rate-max": axis.hi.toFixed(4),
      "aria-label": "Daily delivery rate per provider and failures",
    });
    chart.append(svg("title", {}, "Daily delivery rate per provider (top) and failures by " + stack + " (bottom)"));

    [0, 0.5, 1].forEach((f) => {
      const r = axis.lo + (axis.hi - axis.lo) * f;
      chart.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: rateY(r), y2: rateY(r) }));
      chart.append(svg("text", { class: "rate-tick", x: left - 6, y: rateY(r) + 4, "text-anchor": "end", "font-size": 11 },
        percent(r, places)));
    });
    ticks.forEach((t) => {
      const y = barTop + barH * (1 - t / maxFailed);
      chart.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: y, y2: y }));
      chart.append(svg("text", { class: "count-tick", x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11 }, String(t)));
    });
    chart.append(svg("text", { x: W - right + 6, y: top + 10, "font-size": 11 }, "delivered"));
    chart.append(svg("text", { x: W - right + 6, y: barTop + 10, "font-size": 11 }, "failed"));

    const barW = Math.max(1, step * 0.7);
    days.forEach((d, i) => {
      let y = barTop + barH;
      keys.forEach((key, k) => {
        const n = d[field][key] || 0;
        if (!n) return;
        const h = (n / maxFailed) * barH;
        y -= h;
        chart.append(svg("rect", { class: "bar", x: (x(i) - barW / 2).toFixed(1), y: y.toFixed(1), width: barW.toFixed(1),
          height: Math.max(h, 0.5).toFixed(1), fill: colorFor(key, k), "data-key": key, "data-day": d.day },
        svg("title", {}, d.day + " " + key.replace(/_/g, " ") + ": " + n)));
      });
    });

    // One delivery-rate line per provider (gaps where a day has no final verdicts).
    providers.forEach((p, pi) => {
      const color = providerColor(p.provider, pi);
      let path = "";
      let pen = false;
      const points = [];
      p.days.forEach((d, i) => {
        if (d.delivery_rate === null) { pen = false; return; }
        const y = rateY(d.delivery_rate);
        path += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y.toFixed(1) + " ";
        pen = true;
        points.push(svg("circle", { class: "rate-point", cx: x(i).toFixed(1), cy: y.toFixed(1), r: 2.5, fill: color },
          svg("title", {}, providerName(p.provider) + " " + d.day + ": " + percent(d.delivery_rate, 2) +
            " delivered of " + (d.sent - d.pending) + " with a verdict (" + d.sent + " sent, " + d.failed + " failed)")));
      });
      if (path) chart.append(svg("path", { class: "rate-line", d: path.trim(), fill: "none", stroke: color,
        "stroke-width": 2, "data-provider": p.provider }));
      points.forEach((point) => chart.append(point));
    });
    dayLabels(chart, days, x, H - 4);

    fill("trend-chart-holder", chart);
    document.getElementById("trend-legend").replaceChildren(
      ...providers.map((p, pi) => el("span", { text: providerName(p.provider) + " delivery rate",
        style: "--swatch:" + providerColor(p.provider, pi) })),
      ...keys.map((key, k) => el("span", { text: key.replace(/_/g, " "), style: "--swatch:" + colorFor(key, k) }))
    );
    fill("reputation-holder", el("div", { class: "reputation" },
      reputationChart("bounce-chart", "Bounce rate (permanent failures)", "bounce_rate", providers, days),
      reputationChart("complaint-chart", "Complaint rate", "complaint_rate", providers, days)));
  }

  // A provider's bounce or complaint rate per day with the limit it enforces drawn as a dashed line.
  function reputationChart(id, title, field, providers, days) {
    const W = 490, H = 170, left = 56, right = 10, top = 10, plotH = 130;
    const step = (W - left - right) / days.length;
    const x = (i) => left + i * step + step / 2;
    const limits = providers.filter((p) => p.thresholds).map((p) => ({ provider: p.provider, value: p.thresholds[field] }));
    const axis = rateAxis([...providers.flatMap((p) => p.days.map((d) => d[field])), ...limits.map((l) => l.value)], true);
    const y = (r) => top + plotH * (1 - r / axis.hi);
    const places = axisPlaces(0, axis.hi);
    const chart = svg("svg", { id, viewBox: "0 0 " + W + " " + H, role: "img", "aria-label": title,
      "data-rate-max": axis.hi.toFixed(5) });
    chart.append(svg("title", {}, title));
    [0, 0.5, 1].forEach((f) => {
      const r = axis.hi * f;
      chart.append(svg("line", { class: "grid", x1: left, x2: W - right, y1: y(r), y2: y(r) }));
      chart.append(svg("text", { x: left - 6, y: y(r) + 4, "text-anchor": "end", "font-size": 11 }, percent(r, places)));
    });
    limits.forEach((l) => {
      chart.append(svg("line", { class: "threshold", x1: left, x2: W - right, y1: y(l.value), y2: y(l.value),
        stroke: "#c53030", "stroke-dasharray": "6 4", "data-provider": l.provider, "data-value": l.value }));
      chart.append(svg("text", { class: "threshold-label", x: W - right - 4, y: y(l.value) - 4, "text-anchor": "end",
        "font-size": 11 }, providerName(l.provider) + " limit " + percent(l.value, l.value < 0.01 ? 1 : 0)));
    });
    providers.forEach((p, pi) => {
      const color = providerColor(p.provider, pi);
      let path = "";
      let pen = false;
      p.days.forEach((d, i) => {
        if (d[field] === null) { pen = false; return; }
        path += (pen ? "L" : "M") + x(i).toFixed(1) + " " + y(d[field]).toFixed(1) + " ";
        pen = true;
      });
      if (path) chart.append(svg("path", { class: "reputation-line", d: path.trim(), fill: "none", stroke: color,
        "stroke-width": 2, "data-provider": p.provider }));
    });
    dayLabels(chart, days, x, H - 4);
    return el("figure", {}, el("figcaption", { text: title }), chart);
  }

  function drawByType() {
    const reasons = [...new Set(trendData.by_type.flatMap((t) => Object.keys(t.failures_by_reason)))].sort();
    const columns = [
      { key: "notification_type", label: "Type" },
      { key: "sent", label: "Sent", num: true },
      { key: "delivered", label: "Delivered", num: true },
      { key: "failed", label: "Failed", num: true },
      { label: "Rate", num: true,
        render: (r) => (r.delivery_rate === null ? "" : (r.delivery_rate * 100).toFixed(2) + "%") },
      ...reasons.map((reason) => ({ label: reason.replace(/_/g, " "), num: true,
        render: (r) => r.failures_by_reason[reason] || "" })),
    ];
    fill("trend-by-type", table(columns, trendData.by_type, "Nothing sent in this window."));
  }

  function trendParams() {
    const preset = document.getElementById("trend-days").value;
    const params = { provider: document.getElementById("trend-provider").value };
    if (preset === "custom") {
      params.since = document.getElementById("trend-since").value;
      params.until = document.getElementById("trend-until").value;
    } else {
      params.days = preset;
    }
    return params;
  }

  function loadTrend() {
    const custom = document.getElementById("trend-days").value === "custom";
    document.getElementById("trend-range").hidden = !custom;
    const params = trendParams();
    if (custom && !(params.since && params.until)) return Promise.resolve();
    saveState();
    return api("trend", params).then((payload) => {
      trendData = payload;
      drawTrend();
      drawByType();
    }, (error) => failed("trend-chart-holder", error));
  }

  // ---------------------------------------------------------------- lists

  const subjectColumns = [
    { label: "Subject", nowrap: true, render: (r) => subjectLink(r.subject_id) },
    { key: "subject_type", label: "Type" },
  ];
  const PAGE = 100;
  const value = (id) => document.getElementById(id).value.trim();

  // A list with a total, pages of PAGE rows, filters and a CSV export of everything the filters keep.
  function pagedList(spec) {
    let offset = 0;
    function load() {
      const params = spec.filters();
      return api(spec.route, { ...params, limit: PAGE, offset }).then((listing) => {
        const shown = listing.rows.length;
        document.getElementById(spec.count).textContent = listing.total
          ? "(" + (offset + 1).toLocaleString() + "–" + (offset + shown).toLocaleString() + " of " +
            listing.total.toLocaleString() + ")"
          : "(0)";
        const exportUrl = new URL(BASE + "/api/" + spec.route, window.location.href);
        Object.entries({ ...params, format: "csv" }).forEach(([k, v]) => { if (v) exportUrl.searchParams.set(k, v); });
        const pager = el("div", { class: "pager" },
          el("button", { type: "button", class: "prev", disabled: offset === 0 ? "disabled" : null,
            onclick: () => { offset = Math.max(0, offset - PAGE); load(); }, text: "‹ Previous" }),
          el("button", { type: "button", class: "next", disabled: offset + shown >= listing.total ? "disabled" : null,
            onclick: () => { offset += PAGE; load(); }, text: "Next ›" }),
          listing.total ? el("a", { class: "export", href: exportUrl.pathname + exportUrl.search, download: "",
            text: "Export CSV" + (listing.total > 100000 ? " (first 100,000)" : "") +
              (body.dataset.fullAddresses === "true" ? "" : ", addresses masked") }) : null);
        fill(spec.holder, el("div", {}, pager, table(spec.columns, listing.rows, spec.empty())));
        markOverflow();
      }, (error) => failed(spec.holder, error));
    }
    spec.inputs.forEach((id) => document.getElementById(id).addEventListener("change", () => {
      offset = 0;
      saveState();
      load();
    }));
    return load;
  }

  const loadFlagged = pagedList({
    route: "flagged", holder: "flagged-table", count: "flagged-count",
    inputs: ["flagged-reason", "flagged-since", "flagged-until"],
    filters: () => ({ reason: value("flagged-reason"), since: value("flagged-since"), until: value("flagged-until") }),
    empty: () => "No flagged addresses" + (value("flagged-reason") || value("flagged-since") ? " match these filters." : "."),
    columns: [
      ...subjectColumns,
      { key: "email", label: "Address" },
      { label: "Reason", render: (r) => pill(r.failure_reason.replace(/_/g, " "), "f-set") },
      { label: "Since", nowrap: true, render: (r) => when(r.flagged_at) },
    ],
  });

  const loadNotAtProvider = pagedList({
    route: "not-at-provider", holder: "nap-table", count: "nap-count",
    inputs: ["nap-type", "nap-provider", "nap-since", "nap-until"],
    filters: () => ({ days: 30, notification_type: value("nap-type").toUpperCase(), provider: value("nap-provider"),
      since: value("nap-since"), until: value("nap-until") }),
    empty: () => "None" + (value("nap-since") ? " in these days." : " in the last 30 days."),
    columns: [
      { label: "Sent", nowrap: true, render: (r) => when(r.sent_at) },
      ...subjectColumns,
      { key: "notification_type", label: "Notification" },
      { key: "recipient_email", label: "To" },
      { label: "Provider", render: (r) => providerName(r.provider) },
      { label: "Event", render: (r) => el("code", { text: r.event_id }) },
    ],
  });

  const loadPending = pagedList({
    route: "pending", holder: "pending-table", count: "pending-count",
    inputs: ["pending-hours", "pending-type", "pending-provider", "pending-status", "pending-since"],
    filters: () => ({ hours: value("pending-hours"), notification_type: value("pending-type").toUpperCase(),
      provider: value("pending-provider"), status: value("pending-status"), since: value("pending-since") }),
    empty: () => "Nothing waiting longer than " + value("pending-hours") + " hours.",
    columns: [
      { label: "Sent", nowrap: true, render: (r) => when(r.sent_at) },
      ...subjectColumns,
      { key: "notification_type", label: "Notification" },
      { key: "recipient_email", label: "To" },
      { label: "Provider", render: (r) => providerName(r.provider) },
      { label: "App / verdict", render: (r) => [r.local_status + " / ",
        badge(r.delivery_status || "no receipt yet")] },
    ],
  });

  function loadReports() {
    return api("reports", { limit: 12 }).then((payload) => {
      fill("reports-table", table([
        { key: "period_label", label: "Period" },
        { key: "period_kind", label: "Kind" },
        { key: "row_count", label: "Failed", num: true },
        { label: "Built", nowrap: true, render: (r) => when(r.built_at) },
        { label: "Emailed", render: (r) => (r.sent_at ? when(r.sent_at) + " (" + (r.delivery || "no file") + ")" : "not yet") },
        { label: "File", render: (r) => [
          r.download_url ? el("a", { class: "report-download", href: r.download_url, target: "_blank", rel: "noopener",
            text: "Download CSV" }) : null,
          el("div", { class: "note" }, el("code", { text: r.s3_uri })),
        ] },
      ], payload.rows, "No reports built yet."));
    }, (error) => failed("reports-table", error));
  }

  // ---------------------------------------------------------------- resends

  const DECISION_WORDS = { send: "send", would_send: "would send", skip: "skip", reject: "reject", unknown: "unknown" };
  const LEDGER_WORDS = { sent: "sent", failed: "refused", claimed: "unresolved", unknown: "unknown" };
  const STARTED_WORDS = { manual: "triggered", s3_drop: "started by an S3 drop", scheduled: "scheduled",
    backfill: "backfill" };
  const RESEND_PAGE = 10;
  let resendOffset = 0;

  function countPill(kind, name, n, label) {
    return el("span", { class: "badge d-" + name + (n ? "" : " d-zero"), ["data-" + kind]: name, "data-count": n,
      text: label + " " + n.toLocaleString() });
  }

  function decisionCells(run) {
    const c = run.counts;
    // The decisions a run of its kind makes, and any other that happened (e.g. unknown).
    const usual = [run.dry_run ? "would_send" : "send", "skip", "reject"];
    const decisions = Object.keys(DECISION_WORDS).filter((d) => usual.includes(d) || c.decisions[d]);
    // Why rows were not sent (the sends' own reasons, "ok" and "dry_run", say nothing more).
    const reasons = Object.entries(c.reasons).filter(([decision]) => !["send", "would_send"].includes(decision))
      .flatMap(([decision, byReason]) => Object.entries(byReason)
        .map(([reason, n]) => el("li", { "data-reason": reason, "data-decision": decision },
          (DECISION_WORDS[decision] || decision) + ": " + reason.replace(/_/g, " ") + " ", el("strong", { text: n }))));
    return [
      el("div", { class: "counts" }, decisions.map((d) => countPill("decision", d, c.decisions[d], DECISION_WORDS[d]))),
      reasons.length ? el("ul", { class: "reasons" }, reasons)
        : c.reasons_recorded ? null : el("div", { class: "note", text: "reasons: see the outcome CSV" }),
    ];
  }

  function ledgerCells(run) {
    if (run.dry_run) return el("span", { class: "note", text: "dry run: nothing sent" });
    const c = run.counts;
    return el("div", { class: "counts" }, Object.entries(LEDGER_WORDS)
      .filter(([status]) => c[status] || status === "sent" || status === "failed")
      .map(([status, label]) => countPill("ledger", status, c[status], label)),
    !run.finished_at ? el("span", { class: "note", text: "not summarised yet (sending, or a task failed)" }) : null);
  }

  const resendColumns = [
    { label: "Run", render: (r) => [el("div", { text: when(r.planned_at) }),
      el("div", { class: "note" }, (STARTED_WORDS[r.started_by] || r.started_by) + " · ", el("code", { text: r.dag_run_id }))] },
    { label: "Mode", render: (r) => pill(r.dry_run ? "dry run" : "real run" + (r.force_resend ? ", forced" : ""),
      r.dry_run ? "d-would_send" : "d-send") },
    { label: "List", render: (r) => [el("div", { text: r.rows_read.toLocaleString() + " row(s)" }),
      el("div", { class: "note" }, r.ids_s3_uri ? el("code", { text: r.ids_s3_uri }) : "pasted in the form"),
      el("div", { class: "note", text: [r.id_type, r.template, r.language].filter(Boolean).join(" · ") })] },
    { label: "Decisions", render: decisionCells },
    { label: "Emails", render: ledgerCells },
    { label: "Outcome CSV", render: (r) => [
      r.outcome_url ? el("a", { class: "outcome-download", href: r.outcome_url, target: "_blank", rel: "noopener",
        text: "Download CSV" }) : null,
      r.outcome_uri ? el("div", { class: "note" }, el("code", { text: r.outcome_uri })) : el("span", { class: "note", text: "none" }),
    ] },
  ];

  function loadResend() {
    const incident = value("resend-incident");
    return api("resend", { limit: RESEND_PAGE, offset: resendOffset, incident_id: incident }).then((page) => {
      const shown = page.incidents.length;
      document.getElementById("resend-count").textContent = page.total
        ? "(" + (resendOffset + 1) + "–" + (resendOffset + shown) + " of " + page.total + " incident(s))" : "(0)";
      const pager = el("div", { class: "pager" },
        el("button", { type: "button", class: "prev", disabled: resendOffset === 0 ? "disabled" : null,
          onclick: () => { resendOffset = Math.max(0, resendOffset - RESEND_PAGE); loadResend(); }, text: "‹ Newer" }),
        el("button", { type: "button", class: "next", disabled: resendOffset + shown >= page.total ? "disabled" : null,
          onclick: () => { resendOffset += RESEND_PAGE; loadResend(); }, text: "Older ›" }));
      const incidents = page.incidents.map((i) => el("div", { class: "resend-incident", "data-incident": i.incident_id },
        el("h3", {}, i.incident_id, " ", el("span", { class: "note", text: i.run_count + " run(s), latest " + when(i.last_planned_at) })),
        el("div", { class: "scroll" }, table(resendColumns, i.runs, ""))));
      fill("resend-list", el("div", {}, page.total > RESEND_PAGE ? pager : null, incidents.length ? incidents
        : el("p", { class: "muted", id: "resend-empty", text: incident ? "No resend for " + incident + "."
          : "No resend has run yet." })));
      markOverflow();
    }, (error) => failed("resend-list", error));
  }

  // Tables must fit the page (1280 px wide included): the count of those that do not is kept on <body>.
  function markOverflow() {
    const over = [...document.querySelectorAll("table")].filter((t) => t.scrollWidth > t.parentElement.clientWidth + 1);
    body.dataset.overflowingTables = String(over.length);
  }

  // ---------------------------------------------------------------- search and timeline

  const SOURCE_WORDS = { notify_list: "GC Notify's list", notify_lookup: "a GC Notify look-up",
    ses_sqs: "an SES notification" };
  const CAUSE_WORDS = { bounce: "after a bounce", complaint: "after a complaint", soft_failures: "after repeated soft failures",
    delivery: "an email was delivered", contact_changed: "the address of record changed", recomputed: "recomputed" };
  const words = (map, key) => map[key] || (key || "").replace(/_/g, " ");

  function providerEvents(list) {
    if (!list.length) return el("div", { class: "note", text: "No provider events recorded." });
    return el("ol", { class: "provider-events" }, list.map((p) => el("li", { class: "provider-event" },
      when(p.event_at) + " ", badge(p.delivery_status || "unrecognised"), " ",
      el("code", { text: p.raw_status }),
      p.failure_reason ? " · " + p.failure_reason.replace(/_/g, " ") : "",
      p.detail ? " · " + p.detail : "",
      el("span", { class: "note", text: " (from " + words(SOURCE_WORDS, p.source) + ", seen " + when(p.observed_at) + ")" }))));
  }

  let timeline = null;

  function eventItem(e) {
    return el("li", { class: "tl-event" },
      el("div", {}, el("strong", { text: when(e.sent_at) + " · " + e.notification_type }), " ",
        badge(e.delivery_status || "no receipt yet"),
        e.failure_reason ? " " + e.failure_reason.replace(/_/g, " ") : ""),
      el("div", { class: "note" }, "to " + e.recipient_email + " via " + providerName(e.provider) +
        " · application status " + e.local_status + " · event ", el("code", { text: e.event_id }),
        e.provider_reference ? [" · provider reference ", el("code", { text: e.provider_reference })] : " · no provider reference"),
      e.delivery_detail ? el("div", { class: "note", text: e.delivery_detail }) : null,
      providerEvents(e.provider_events));
  }

  function flagItem(h) {
    const title = h.action === "set" ? "Address flagged" : "Flag cleared";
    return el("li", { class: "tl-flag " + h.action },
      el("strong", { text: when(h.happened_at) + " · " + title }),
      " " + h.email + " · " + words(CAUSE_WORDS, h.cause) +
        (h.failure_reason ? " (" + h.failure_reason.replace(/_/g, " ") + ")" : ""),
      h.event_id ? [" · event ", el("code", { text: h.event_id })] : null);
  }

  function renderTimeline() {
    const t = timeline;
    const oldest = t.events.length ? new Date(t.events[t.events.length - 1].sent_at) : null;
    const flags = t.flag_history.filter((h) => !t.more || !oldest || new Date(h.happened_at) >= oldest);
    const items = [
      ...t.events.map((e) => ({ at: new Date(e.sent_at), order: 1, node: eventItem(e) })),
      ...flags.map((h) => ({ at: new Date(h.happened_at), order: 0, node: flagItem(h) })),
    ].sort((a, b) => b.at - a.at || a.order - b.order);

    const contacts = t.contacts.map((c) => el("div", {},
      "Address of record (" + c.subject_type + "): ", el("strong", { text: c.email }),
      " · updated " + when(c.updated_at) + " ",
      c.flag_reason ? [pill("flagged", "f-set"), " since " + when(c.flagged_at) + " (" + c.flag_reason.replace(/_/g, " ") + ")"]
        : pill("not flagged", "s-delivered")));

    fill("timeline", el("div", { id: "timeline-result", "data-subject": t.subject_id },
      el("h3", { text: t.subject_id + " (" + t.subject_types.join(", ") + ")" }),
      contacts.length ? contacts : el("div", { class: "note", text: "No address of record." }),
      el("div", { class: "note", text: "Newest first: " + t.events.length + " notification(s)" +
        (t.more ? " shown, older ones below" : "") + ", " + t.flag_history.length + " flag change(s)" }),
      el("ol", { class: "timeline" }, items.map((i) => i.node)),
      t.more ? el("button", { type: "button", id: "timeline-older", text: "Show older notifications",
        onclick: showOlder }) : null));
    markOverflow();
  }

  function showOlder() {
    return api("timeline", { subject_id: timeline.subject_id, offset: timeline.events.length }).then((older) => {
      timeline.events = timeline.events.concat(older.events);
      timeline.more = older.events_truncated;
      renderTimeline();
    }, (error) => fill("timeline", el("p", { class: "error", id: "timeline-error", text: error.message })));
  }

  function lookup(subject, scroll = true) {
    subject = (subject || "").trim();
    if (!subject) return Promise.resolve();
    document.getElementById("subject-input").value = subject;
    saveState({ subject, q: null });
    fill("timeline", el("p", { class: "muted", text: "Loading " + subject + "…" }));
    if (scroll) document.getElementById("lookup").scrollIntoView({ block: "start" });
    return api("timeline", { subject_id: subject }).then(
      (t) => { timeline = { ...t, more: t.events_truncated }; renderTimeline(); },
      (error) => fill("timeline", el("p", { class: "error", id: "timeline-error", text: error.message }))
    );
  }

  function search(text, scroll = true) {
    text = (text || "").trim();
    if (!text) return Promise.resolve();
    fill("timeline", el("p", { class: "muted", text: "Searching…" }));
    return api("search", { q: text }).then((found) => {
      if (found.rows.length === 1) return lookup(found.rows[0].subject_id, scroll);
      saveState({ q: text, subject: null });
      if (!found.rows.length) {
        fill("timeline", el("p", { class: "muted", id: "search-empty",
          text: "Nothing found: no subject id, email address or provider reference matches." }));
        return null;
      }
      fill("timeline", el("div", { id: "search-results" },
        el("p", { class: "note", text: found.rows.length + " subjects match; pick one." }),
        table([
          { label: "Subject", nowrap: true, render: (r) => subjectLink(r.subject_id) },
          { key: "subject_type", label: "Type" },
          { key: "email", label: "Address of record" },
          { key: "matched_by", label: "Matched by" },
        ], found.rows, "")));
      return null;
    }, (error) => fill("timeline", el("p", { class: "error", id: "timeline-error", text: error.message })));
  }

  // ---------------------------------------------------------------- wiring

  restoreState();
  ["trend-days", "trend-provider", "trend-since", "trend-until"].forEach((id) =>
    document.getElementById(id).addEventListener("change", loadTrend));
  document.getElementById("trend-stack").addEventListener("change", () => { saveState(); if (trendData) drawTrend(); });
  document.getElementById("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    search(document.getElementById("subject-input").value);
  });
  window.addEventListener("resize", markOverflow);
  document.getElementById("resend-incident").addEventListener("change", () => {
    resendOffset = 0;
    saveState();
    loadResend();
  });

  const loads = [loadHealth(), loadTrend(), loadFlagged(), loadNotAtProvider(), loadPending(), loadReports(),
    loadResend()];
  const subject = state.get("subject") || body.dataset.subject;
  if (subject) {
    document.getElementById("subject-input").value = subject;
    loads.push(lookup(subject, false));
  } else if (state.get("q")) {
    document.getElementById("subject-input").value = state.get("q");
    loads.push(search(state.get("q"), false));
  }
  Promise.allSettled(loads).then(() => {
    markOverflow();
    // A link to one incident's resends (?resend_incident=…) opens at the section.
    if (state.get("resend_incident") && !subject) document.getElementById("resend").scrollIntoView({ block: "start" });
    body.setAttribute("data-loaded", "true");
  });
})();
