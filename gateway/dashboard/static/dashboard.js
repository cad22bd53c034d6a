// Routeway dashboard: polls GET /admin/state and renders it. Every value from the server goes through
// textContent (model names and request ids come from clients), never innerHTML.
"use strict";

(function () {
  const POLL_MS = 1500;
  const KEY_SLOT = "routeway.adminKey"; // sessionStorage: gone when the tab closes, never in the URL
  const COLORS = ["#2563eb", "#f59e0b", "#10b981", "#ef4444", "#8b5cf6", "#06b6d4", "#ec4899", "#84cc16"];
  const $ = (id) => document.getElementById(id);

  let state = null;
  let chart = null;
  let chartShape = "";
  let windowName = "5m";
  let timer = null;
  const backendColor = new Map();

  // ---- formatting ---------------------------------------------------------------------------
  const dash = "–";
  const fmtMs = (v) => (v == null ? dash : v < 1000 ? `${v.toFixed(v < 10 ? 1 : 0)} ms` : `${(v / 1000).toFixed(2)} s`);
  const fmtNum = (v, d = 0) => (v == null ? dash : Number(v).toLocaleString(undefined, { maximumFractionDigits: d, minimumFractionDigits: d }));
  const fmtPct = (v) => (v == null ? dash : `${(v * 100).toFixed(v < 0.1 ? 1 : 0)}%`);
  const fmtUsd = (v) => {
    if (v == null) return dash;
    if (v === 0) return "$0";
    if (v >= 1) return `$${v.toFixed(2)}`;
    if (v >= 0.01) return `$${v.toFixed(4)}`;
    return v >= 1e-6 ? `$${v.toPrecision(2)}` : `$${v.toExponential(1)}`;
  };
  const fmtPrice = (v) => (v == null ? dash : `$${Number(v.toPrecision(3))}`);
  const fmtAge = (s) => {
    if (s == null) return dash;
    if (s < 1) return "now";
    if (s < 60) return `${s.toFixed(0)} s ago`;
    if (s < 3600) return `${Math.floor(s / 60)} min ago`;
    return `${(s / 3600).toFixed(1)} h ago`;
  };
  const fmtDuration = (s) => {
    if (s == null) return dash;
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
    if (s < 3600) return `${Math.floor(s / 60)}m ${Math.round(s % 60)}s`;
    return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  };
  const fmtTime = (epoch) => new Date(epoch * 1000).toLocaleTimeString([], { hour12: false });

  // "-" is the server's name for "no backend answered" (the request failed).
  const label = (backend) => (backend === "-" ? "none (failed)" : backend);

  function colorOf(backend) {
    if (!backendColor.has(backend)) backendColor.set(backend, backendColor.size % COLORS.length);
    return backendColor.get(backend);
  }

  function cell(text, cls) {
    const td = document.createElement("td");
    td.textContent = text == null ? dash : String(text);
    if (cls) td.className = cls;
    return td;
  }

  function row(cells) {
    const tr = document.createElement("tr");
    for (const c of cells) tr.appendChild(c);
    return tr;
  }

  function pill(stateName, text) {
    const td = document.createElement("td");
    const span = document.createElement("span");
    span.className = "pill";
    span.dataset.state = stateName;
    span.textContent = text;
    td.appendChild(span);
    return td;
  }

  // ---- polling and auth ---------------------------------------------------------------------
  function authHeaders() {
    const key = sessionStorage.getItem(KEY_SLOT);
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  async function poll() {
    clearTimeout(timer);
    try {
      const resp = await fetch("/admin/state", { headers: authHeaders(), cache: "no-store" });
      if (resp.status === 401 || resp.status === 403) {
        const body = await resp.json().catch(() => null);
        askForKey(resp.status, body && body.error ? body.error.message : "");
        return; // no polling until a key is entered
      }
      if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
      state = await resp.json();
      showBoard();
      render();
      setLive("live", `live · ${fmtTime(state.now)}`);
    } catch (err) {
      setLive("stale", "no answer, retrying");
    }
    timer = setTimeout(poll, POLL_MS);
  }

  function setLive(name, text) {
    const el = $("live");
    el.dataset.state = name;
    el.textContent = text;
  }

  function askForKey(status, message) {
    const tried = sessionStorage.getItem(KEY_SLOT) !== null;
    sessionStorage.removeItem(KEY_SLOT);
    $("board").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    setLive("stale", "locked");
    $("login-error").textContent = status === 401 && tried ? "That admin key was refused." : status === 403 ? message : "";
    $("login-key").focus();
  }

  function showBoard() {
    $("login").hidden = true;
    $("board").hidden = false;
    $("logout").hidden = sessionStorage.getItem(KEY_SLOT) === null;
  }

  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const key = $("login-key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_SLOT, key);
    $("login-key").value = "";
    $("login-error").textContent = "";
    poll();
  });

  $("logout").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_SLOT);
    poll();
  });

  // ---- rendering ----------------------------------------------------------------------------
  function render() {
    $("policy").textContent = state.policy || dash;
    $("uptime").textContent = fmtDuration(state.now - state.started);
    renderKpis();
    renderFleet();
    renderRoutePicker();
    renderTraffic();
    renderMoney();
    renderDecisions();
  }

  function renderKpis() {
    const t = state.traffic, m = state.money;
    if (!t || !m) return;
    const w = t.windows["5m"];
    $("kpi-rps").textContent = fmtNum(t.requests_per_s, 2);
    $("kpi-errors").textContent = fmtPct(w.error_rate);
    $("kpi-errors").className = "value " + (w.error_rate > 0.05 ? "bad" : w.error_rate > 0 ? "warn" : "");
    $("kpi-retries").textContent = `${w.failovers} · ${w.hedges}`;
    $("kpi-cost-min").textContent = fmtUsd(m.per_minute.total);
    $("kpi-cost-hour").textContent = fmtUsd(m.per_hour.total);
    $("kpi-tpj").textContent = m.tokens_per_joule_total == null ? dash : fmtNum(m.tokens_per_joule_total, 2);
  }

  function breakerCell(f) {
    if (f.breaker === "open") return pill("open", f.breaker_retry_s ? `open · ${f.breaker_retry_s.toFixed(1)} s` : "open · trial");
    if (f.rate_limited_s != null) return pill("rate-limited", `429 · ${f.rate_limited_s.toFixed(1)} s`);
    return pill(f.breaker, f.breaker.replace("_", "-"));
  }

  // Non-streaming traffic has no first token of its own: its mean latency stands in, marked as such.
  function ttftCell(f) {
    if (f.ttft_p50_ms != null || f.latency_ms == null) return cell(fmtMs(f.ttft_p50_ms), "num");
    const td = cell(`~${fmtMs(f.latency_ms)}`, "num muted");
    td.title = "no streams measured: mean latency of whole responses";
    return td;
  }

  function headroomText(left, limit) {
    if (left == null) return dash;
    return limit ? `${fmtNum(left)} / ${fmtNum(limit)}` : fmtNum(left);
  }

  function renderFleet() {
    const body = $("fleet").tBodies[0];
    body.replaceChildren(
      ...state.fleet.map((f) => {
        const tr = row([
          cell(f.backend),
          cell(f.models.join(", ")),
          cell(f.hardware),
          breakerCell(f),
          ttftCell(f),
          cell(fmtMs(f.ttft_p95_ms), "num"),
          cell(fmtNum(f.tokens_per_s), "num"),
          cell(f.in_flight, "num"),
          cell(headroomText(f.requests_remaining, f.requests_limit), "num" + (f.requests_limit && f.requests_remaining < 0.1 * f.requests_limit ? " bad" : "")),
          cell(headroomText(f.tokens_remaining, f.tokens_limit), "num"),
          cell(f.reset_s == null ? dash : fmtDuration(f.reset_s), "num"),
          cell(fmtPct(f.failure_rate), "num" + (f.failure_rate > 0.2 ? " bad" : f.failure_rate > 0 ? " warn" : "")),
          cell(`${fmtPrice(f.input_price)} / ${fmtPrice(f.output_price)}`, "num"),
          cell(fmtNum(f.joules_per_token, 2), "num"),
          cell(fmtAge(f.last_tried_s), "num muted"),
        ]);
        tr.dataset.backend = f.backend;
        tr.dataset.modelId = f.model_id;
        tr.dataset.breaker = f.breaker;
        return tr;
      }),
    );
  }

  function renderRoutePicker() {
    const pick = $("route-pick");
    const names = state.routes.map((r) => r.name);
    const have = [...pick.options].map((o) => o.value);
    if (names.join("\n") === have.join("\n")) return;
    const current = pick.value;
    pick.replaceChildren(
      ...names.map((n) => {
        const o = document.createElement("option");
        o.value = n;
        o.textContent = n;
        return o;
      }),
    );
    pick.value = names.includes(current) ? current : busiest(names);
  }

  function busiest(names) {
    const split = state.traffic ? state.traffic.windows["60m"].by_route : {};
    const total = (r) => Object.values(split[r] || {}).reduce((a, b) => a + b, 0);
    return names.reduce((best, r) => (total(r) > total(best) ? r : best), names[0]);
  }

  function renderTraffic() {
    const t = state.traffic;
    if (!t) return;
    const route = $("route-pick").value;
    const seconds = { "5m": 300, "15m": 900, "60m": 3600 }[windowName];
    const n = Math.max(1, Math.round(seconds / t.bucket_s));
    const times = t.series.times.slice(-n);
    const lines = t.series.lines.filter((l) => l.route === route);
    const data = [times, ...lines.map((l) => l.requests.slice(-n).map((c) => c / t.bucket_s))];
    const shape = `${route}|${windowName}|${lines.map((l) => l.backend).join(",")}`;
    drawChart(shape, lines.map((l) => l.backend), data);
    renderSplit(t.windows[windowName], route);
  }

  function cssVar(name) {
    return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  }

  function drawChart(shape, backends, data) {
    const box = $("chart");
    if (typeof uPlot === "undefined") return;
    if (chart && shape === chartShape) {
      chart.setData(data);
      return;
    }
    if (chart) chart.destroy();
    chartShape = shape;
    const axis = { stroke: cssVar("--muted"), grid: { stroke: cssVar("--line"), width: 1 }, ticks: { stroke: cssVar("--line"), width: 1 } };
    chart = new uPlot(
      {
        width: Math.max(280, box.clientWidth),
        height: 220,
        legend: { show: true, live: false },
        cursor: { drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(1, max * 1.15)] } },
        axes: [axis, { ...axis, label: "requests/s", labelSize: 18, size: 50 }],
        series: [
          {},
          ...backends.map((b) => ({
            label: label(b),
            stroke: COLORS[colorOf(b)],
            width: 2,
            fill: COLORS[colorOf(b)] + "22",
            points: { show: false },
            value: (u, v) => (v == null ? dash : v.toFixed(2)),
          })),
        ],
      },
      data,
      box,
    );
  }

  function renderSplit(w, route) {
    const box = $("split");
    const counts = (w && w.by_route[route]) || {};
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    $("traffic-note").textContent = total
      ? `${fmtNum(total)} requests on route ${route} in the last ${windowName.replace("m", " min")}; ${w.failovers} failovers, ${w.hedges} hedges across all routes.`
      : `No requests on route ${route} in the last ${windowName.replace("m", " min")}.`;
    box.replaceChildren(
      ...Object.entries(counts)
        .sort((a, b) => b[1] - a[1])
        .map(([backend, n]) => {
          const bar = document.createElement("div");
          bar.className = "bar";
          const name = document.createElement("span");
          name.textContent = label(backend);
          const track = document.createElement("div");
          track.className = "track";
          const fill = document.createElement("div");
          fill.className = `fill c${colorOf(backend)}`;
          fill.style.width = `${((100 * n) / total).toFixed(1)}%`;
          track.appendChild(fill);
          const share = document.createElement("span");
          share.className = "muted";
          share.textContent = `${((100 * n) / total).toFixed(0)}% · ${fmtNum(n)}`;
          bar.append(name, track, share);
          return bar;
        }),
    );
  }

  function renderMoney() {
    const m = state.money;
    if (!m) return;
    const body = $("money").tBodies[0];
    const rows = [row([cell("total", "strong"), cell(fmtUsd(m.per_minute.total), "num"), cell(fmtUsd(m.per_hour.total), "num"),
      cell(m.tokens_per_joule_total == null ? dash : fmtNum(m.tokens_per_joule_total, 2), "num")])];
    const section = (title) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.colSpan = 4;
      th.textContent = title;
      tr.appendChild(th);
      return tr;
    };
    const routes = Object.keys(m.per_hour.by_route);
    if (routes.length) {
      rows.push(section("by route"));
      for (const r of routes) {
        rows.push(row([cell(r), cell(fmtUsd(m.per_minute.by_route[r] || 0), "num"), cell(fmtUsd(m.per_hour.by_route[r]), "num"), cell(dash, "num muted")]));
      }
    }
    const backends = [...new Set([...Object.keys(m.per_hour.by_backend), ...Object.keys(m.tokens_per_joule)])].sort();
    if (backends.length) {
      rows.push(section("by backend"));
      for (const b of backends) {
        const tpj = m.tokens_per_joule[b];
        rows.push(row([cell(b), cell(fmtUsd(m.per_minute.by_backend[b] || 0), "num"), cell(fmtUsd(m.per_hour.by_backend[b] || 0), "num"),
          cell(tpj == null ? dash : fmtNum(tpj, 2), "num")]));
      }
    }
    body.replaceChildren(...rows);
  }

  function renderDecisions() {
    const body = $("decisions").tBodies[0];
    body.replaceChildren(
      ...state.decisions.map((d) => {
        const failed = d.status == null || d.status >= 400;
        const tr = row([
          cell(fmtTime(d.at), "muted"),
          cell(d.id),
          cell(d.model),
          cell(d.route),
          cell(d.backend),
          cell(d.status, "num" + (failed ? " bad" : "")),
          cell(d.attempts.length, "num" + (d.attempts.length > 1 ? " warn" : "")),
          cell(fmtMs(d.latency_ms), "num"),
          cell(fmtUsd(d.cost_usd), "num"),
        ]);
        tr.tabIndex = 0;
        tr.dataset.id = d.id;
        tr.addEventListener("click", () => openDrill(d.id));
        tr.addEventListener("keydown", (ev) => {
          if (ev.key === "Enter") openDrill(d.id);
        });
        return tr;
      }),
    );
  }

  // ---- decision drill-down ------------------------------------------------------------------
  // The ranking is fetched only when a decision is opened: the polled state stays small.
  async function openDrill(id) {
    const resp = await fetch(`/admin/decisions/${encodeURIComponent(id)}`, { headers: authHeaders(), cache: "no-store" });
    if (!resp.ok) {
      $("live").textContent = resp.status === 404 ? "that decision is no longer kept" : `HTTP ${resp.status}`;
      return;
    }
    const d = await resp.json();
    $("drill-title").textContent = `Decision ${d.id}`;
    const parts = [`${d.op} · model ${d.model ?? dash}`, `route ${d.route ?? dash} (${d.objective ?? dash})`,
      `served by ${d.backend ?? "nobody"}`, `status ${d.status ?? dash}`, fmtMs(d.latency_ms), fmtUsd(d.cost_usd)];
    if (d.error) parts.push(`error ${d.error}`);
    $("drill-summary").textContent = parts.join(" · ");
    $("drill-attempts").tBodies[0].replaceChildren(
      ...d.attempts.map((a, i) =>
        row([cell(i + 1), cell(a.backend), cell(a.outcome, a.outcome === "ok" ? "good" : "bad"), cell(a.status, "num"),
          cell(fmtMs(a.ttft_ms), "num"), cell(fmtMs(a.duration_ms), "num"), cell(a.error, "muted")]),
      ),
    );
    $("drill-candidates").tBodies[0].replaceChildren(
      ...d.candidates.map((c, i) =>
        row([cell(i + 1), cell(c.backend), cell(c.hardware), cell(fmtMs(c.predicted_latency_ms), "num"),
          cell(fmtUsd(c.predicted_cost_usd), "num"), cell(`${fmtNum(c.predicted_energy_j, 1)} J`, "num"),
          cell(fmtPct(c.failure_rate), "num"), cell(c.requests_remaining, "num"), cell(c.live_telemetry ? "yes" : "priors"),
          cell(c.demoted), cell(fmtNum(c.score, 4), "num")]),
      ),
    );
    const dropped = $("drill-dropped");
    dropped.replaceChildren(
      ...(d.dropped.length ? d.dropped.map((x) => `${x.backend}: ${x.reason}`) : ["none: every candidate was eligible"]).map(
        (text) => {
          const li = document.createElement("li");
          li.textContent = text;
          return li;
        },
      ),
    );
    $("drill").showModal();
  }

  // ---- controls -----------------------------------------------------------------------------
  $("route-pick").addEventListener("change", () => state && renderTraffic());
  for (const b of $("window-pick").querySelectorAll("button")) {
    b.addEventListener("click", () => {
      windowName = b.dataset.window;
      for (const o of $("window-pick").querySelectorAll("button")) o.setAttribute("aria-pressed", String(o === b));
      if (state) renderTraffic();
    });
  }
  window.addEventListener("resize", () => {
    if (chart) chart.setSize({ width: Math.max(280, $("chart").clientWidth), height: 220 });
  });
  window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", () => {
    chartShape = ""; // axis colours come from CSS variables: rebuild the chart
    if (state) renderTraffic();
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) poll();
  });

  poll();
})();
