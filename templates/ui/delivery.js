// mailtrace Delivery page: fetches the JSON routes beside it and draws tables, the trend chart (inline
// SVG) and a subject's timeline. Data is only ever inserted as text (textContent), never as HTML.
(function () {
  "use strict";

  const body = document.body;
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
    children.flat().forEach((child) => {
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
      ? h.warnings.map((w) => healthItem(w.level, "warning", w.message))
      : [healthItem("green", "warning", "every source index the pipeline needs is there")];
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

  function drawTrend() {
    const stack = document.getElementById("trend-stack").value;
    const field = stack === "reason" ? "failures_by_reason" : "failures_by_status";
    const days = trendData.days;
    const keys = [...new Set(days.flatMap((d) => Object.keys(d[field])))].sort();

    const W = 1000, H = 330, left = 52, right = 52, top = 14, rateH = 120, gap = 34, barH = 120;
    const plotW = W - left - right;
    const step = plotW / days.length;
    const barTop = top + rateH + gap;
    const maxFailed = Math.max(1, ...days.map((d) => d.failed));
    const chart = svg("svg", {
      id: "trend-chart", viewBox: "0 0 " + W + " " + H, role: "img", "data-days": days.length,
      "aria-label": "Daily delivery rate and failures",
    });
    chart.append(svg("title", {}, "Daily delivery rate (top) and failures by " + stack + " (bottom)"));

    // Axes and grid.
    [0, 0.5, 1].forEach((f) => {
      const y = top + rateH * (1 - f);
      chart.append(svg("line", { x1: left, x2: W - right, y1: y, y2: y, stroke: "#e2e8f0" }));
      chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#616e7c" },
        Math.round(f * 100) + "%"));
    });
    [0, 0.5, 1].forEach((f) => {
      const y = barTop + barH * (1 - f);
      chart.append(svg("line", { x1: left, x2: W - right, y1: y, y2: y, stroke: "#e2e8f0" }));
      chart.append(svg("text", { x: left - 6, y: y + 4, "text-anchor": "end", "font-size": 11, fill: "#616e7c" },
        String(Math.round(f * maxFailed))));
    });
    chart.append(svg("text", { x: W - right + 6, y: top + 10, "font-size": 11, fill: "#2f855a" }, "rate"));
    chart.append(svg("text", { x: W - right + 6, y: barTop + 10, "font-size": 11, fill: "#c53030" }, "failed"));

    // Stacked failure bars.
    const barW = Math.max(1, step * 0.7);
    days.forEach((d, i) => {
      let y = barTop + barH;
      const x = left + i * step + (step - barW) / 2;
      keys.forEach((key, k) => {
        const n = d[field][key] || 0;
        if (!n) return;
        const h = (n / maxFailed) * barH;
        y -= h;
        chart.append(svg("rect", { class: "bar", x: x.toFixed(1), y: y.toFixed(1), width: barW.toFixed(1),
          height: Math.max(h, 0.5).toFixed(1), fill: colorFor(key, k), "data-key": key, "data-day": d.day },
        svg("title", {}, d.day + " " + key.replace(/_/g, " ") + ": " + n)));
      });
    });

    // Delivery-rate line (gaps where a day has no final verdicts).
    let path = "";
    let pen = false;
    days.forEach((d, i) => {
      if (d.delivery_rate === null) { pen = false; return; }
      const x = left + i * step + step / 2;
      const y = top + rateH * (1 - d.delivery_rate);
      path += (pen ? "L" : "M") + x.toFixed(1) + " " + y.toFixed(1) + " ";
      pen = true;
      chart.append(svg("circle", { class: "rate-point", cx: x.toFixed(1), cy: y.toFixed(1), r: 2.5, fill: "#2f855a" },
        svg("title", {}, d.day + ": " + (d.delivery_rate * 100).toFixed(2) + "% delivered of " +
          (d.sent - d.pending) + " with a verdict (" + d.sent + " sent, " + d.failed + " failed)")));
    });
    if (path) {
      chart.insertBefore(svg("path", { class: "rate-line", d: path.trim(), fill: "none", stroke: "#2f855a",
        "stroke-width": 2 }), chart.querySelector("circle"));
    }

    // Day labels: about ten, always the last.
    const every = Math.max(1, Math.ceil(days.length / 10));
    days.forEach((d, i) => {
      if (i % every && i !== days.length - 1) return;
      chart.append(svg("text", { x: (left + i * step + step / 2).toFixed(1), y: H - 4, "text-anchor": "middle",
        "font-size": 11, fill: "#616e7c" }, d.day.slice(5)));
    });

    fill("trend-chart-holder", chart);
    const legend = document.getElementById("trend-legend");
    legend.replaceChildren(
      el("span", { text: "delivery rate", style: "--swatch:#2f855a" }),
      ...keys.map((key, k) => el("span", { text: key.replace(/_/g, " "), style: "--swatch:" + colorFor(key, k) }))
    );

    const totals = days.reduce((a, d) => ({ sent: a.sent + d.sent, delivered: a.delivered + d.delivered,
      pending: a.pending + d.pending, failed: a.failed + d.failed }), { sent: 0, delivered: 0, pending: 0, failed: 0 });
    const decided = totals.sent - totals.pending;
    document.getElementById("trend-summary").textContent = trendData.since + " to " + trendData.until + ": " +
      totals.sent + " sent, " + totals.failed + " failed, " + totals.pending + " pending" +
      (decided ? ", " + ((totals.delivered / decided) * 100).toFixed(2) + "% delivered" : "");
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

  function loadTrend() {
    const days = document.getElementById("trend-days").value;
    return api("trend", { days }).then((payload) => {
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

  function loadFlagged() {
    return api("flagged", { limit: 200 }).then((listing) => {
      countText("flagged-count", listing);
      fill("flagged-table", table([
        ...subjectColumns,
        { key: "email", label: "Address" },
        { label: "Reason", render: (r) => pill(r.failure_reason.replace(/_/g, " "), "f-set") },
        { label: "Since", nowrap: true, render: (r) => when(r.flagged_at) },
      ], listing.rows, "No flagged addresses."));
    }, (error) => failed("flagged-table", error));
  }

  function loadNotAtProvider() {
    return api("not-at-provider", { days: 30, limit: 200 }).then((listing) => {
      countText("nap-count", listing);
      fill("nap-table", table([
        { label: "Sent", nowrap: true, render: (r) => when(r.sent_at) },
        ...subjectColumns,
        { key: "notification_type", label: "Notification" },
        { key: "recipient_email", label: "To" },
        { key: "provider", label: "Provider" },
        { label: "Event", render: (r) => el("code", { text: r.event_id }) },
      ], listing.rows, "None in the last 30 days."));
    }, (error) => failed("nap-table", error));
  }

  function loadPending() {
    const hours = document.getElementById("pending-hours").value;
    return api("pending", { hours, limit: 200 }).then((listing) => {
      countText("pending-count", listing);
      fill("pending-table", table([
        { label: "Sent", nowrap: true, render: (r) => when(r.sent_at) },
        ...subjectColumns,
        { key: "notification_type", label: "Notification" },
        { key: "recipient_email", label: "To" },
        { key: "provider", label: "Provider" },
        { label: "App / verdict", render: (r) => [r.local_status + " / ", badge(r.delivery_status || "none")] },
      ], listing.rows, "Nothing waiting longer than " + hours + " hours."));
    }, (error) => failed("pending-table", error));
  }

  function loadReports() {
    return api("reports", { limit: 12 }).then((payload) => {
      fill("reports-table", table([
        { key: "period_label", label: "Period" },
        { key: "period_kind", label: "Kind" },
        { key: "row_count", label: "Failed", num: true },
        { label: "Built", nowrap: true, render: (r) => when(r.built_at) },
        { label: "Emailed", render: (r) => (r.sent_at ? when(r.sent_at) + " (" + (r.delivery || "no file") + ")" : "not yet") },
        { label: "Object", render: (r) => [
          el("code", { text: r.s3_uri }),
          r.download_url ? [" ", el("a", { href: r.download_url, target: "_blank", rel: "noopener", text: "download" })] : null,
        ] },
      ], payload.rows, "No reports built yet."));
    }, (error) => failed("reports-table", error));
  }

  // ---------------------------------------------------------------- timeline

  function providerEvents(list) {
    if (!list.length) return el("div", { class: "note", text: "No provider events recorded." });
    return el("ol", { class: "provider-events" }, list.map((p) => el("li", { class: "provider-event" },
      when(p.event_at) + " ", badge(p.delivery_status || "unrecognised"), " ",
      el("code", { text: p.raw_status }),
      p.failure_reason ? " · " + p.failure_reason.replace(/_/g, " ") : "",
      p.detail ? " · " + p.detail : "",
      el("span", { class: "note", text: " (" + p.source + ", seen " + when(p.observed_at) + ")" }))));
  }

  function renderTimeline(t) {
    const items = [];
    t.events.forEach((e) => items.push({ at: e.sent_at, order: 0, node: el("li", { class: "tl-event" },
      el("div", {}, el("strong", { text: when(e.sent_at) + " · " + e.notification_type }), " ",
        badge(e.delivery_status || "none"),
        e.failure_reason ? " " + e.failure_reason.replace(/_/g, " ") : ""),
      el("div", { class: "note" }, "to " + e.recipient_email + " via " + e.provider + " · app status " + e.local_status +
        " · event ", el("code", { text: e.event_id }),
        e.provider_reference ? [" · provider ref ", el("code", { text: e.provider_reference })] : " · no provider reference"),
      e.delivery_detail ? el("div", { class: "note", text: e.delivery_detail }) : null,
      providerEvents(e.provider_events)) }));
    t.flag_history.forEach((h) => items.push({ at: h.happened_at, order: 1, node: el("li", {
      class: "tl-flag " + h.action },
      el("strong", { text: when(h.happened_at) + " · address flag " + h.action + " " }), badge(h.action, "f-"),
      " " + h.email + " · " + h.cause.replace(/_/g, " ") + (h.failure_reason ? " (" + h.failure_reason.replace(/_/g, " ") + ")" : ""),
      h.event_id ? [" · event ", el("code", { text: h.event_id })] : null) }));
    items.sort((a, b) => new Date(a.at) - new Date(b.at) || a.order - b.order);

    const contacts = t.contacts.map((c) => el("div", {},
      "Address of record (" + c.subject_type + "): ", el("strong", { text: c.email }),
      " · updated " + when(c.updated_at) + " ",
      c.flag_reason ? [pill("flagged", "f-set"), " since " + when(c.flagged_at) + " (" + c.flag_reason.replace(/_/g, " ") + ")"]
        : pill("not flagged", "s-delivered")));

    return el("div", { id: "timeline-result", "data-subject": t.subject_id },
      el("h3", { text: t.subject_id + " (" + t.subject_types.join(", ") + ")" }),
      contacts.length ? contacts : el("div", { class: "note", text: "No address of record." }),
      el("div", { class: "note", text: t.events.length + " notification(s), " + t.flag_history.length +
        " flag change(s)" + (t.events_truncated ? "; only the first " + t.events.length + " notifications shown" : "") }),
      el("ol", { class: "timeline" }, items.map((i) => i.node)));
  }

  function lookup(subject, scroll = true) {
    subject = (subject || "").trim();
    if (!subject) return Promise.resolve();
    document.getElementById("subject-input").value = subject;
    const url = new URL(window.location.href);
    url.searchParams.set("subject", subject);
    window.history.replaceState(null, "", url);
    fill("timeline", el("p", { class: "muted", text: "Loading " + subject + "…" }));
    if (scroll) document.getElementById("lookup").scrollIntoView({ block: "start" });
    return api("timeline", { subject_id: subject }).then(
      (t) => fill("timeline", renderTimeline(t)),
      (error) => fill("timeline", el("p", { class: "error", id: "timeline-error", text: error.message }))
    );
  }

  // ---------------------------------------------------------------- wiring

  document.getElementById("trend-days").value = body.dataset.days || "30";
  document.getElementById("trend-days").addEventListener("change", loadTrend);
  document.getElementById("trend-stack").addEventListener("change", () => trendData && drawTrend());
  document.getElementById("pending-hours").addEventListener("change", loadPending);
  document.getElementById("lookup-form").addEventListener("submit", (event) => {
    event.preventDefault();
    lookup(document.getElementById("subject-input").value);
  });

  const loads = [loadHealth(), loadTrend(), loadFlagged(), loadNotAtProvider(), loadPending(), loadReports()];
  if (body.dataset.subject) loads.push(lookup(body.dataset.subject, false));
  Promise.allSettled(loads).then(() => body.setAttribute("data-loaded", "true"));
})();
