// The operator page (#admin): for a user whose ID token carries the custom claim `admin: true`.
// Everything comes from the get_admin_stats callable (the server checks the claim; the rules
// give an operator no more than anyone), refreshed every few seconds; failures by code and spend
// by model are drawn as small SVG bar charts (no library).

import { Callable } from "@promptq/web/schema";
import { httpsCallable } from "firebase/functions";
import { $, fail, setText } from "./dom.js";

export const REFRESH_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

const usd = (v) => (v < 1 ? `$${v.toFixed(4)}` : `$${v.toFixed(2)}`);
const secs = (p) => (p.n ? `p50 ${p.p50.toFixed(2)} s · p95 ${p.p95.toFixed(2)} s (n=${p.n})` : "no sample");

/**
 * A horizontal bar chart: one row per [label, value], bars scaled to the largest.
 * @param {[string, number][]} rows
 * @param {(v: number) => string} format
 * @returns {SVGSVGElement}
 */
export function barChart(rows, format) {
  const svg = document.createElementNS(SVG, "svg");
  const rowH = 22, labelW = 180, barW = 260, width = labelW + barW + 90;
  svg.setAttribute("viewBox", `0 0 ${width} ${Math.max(rows.length, 1) * rowH}`);
  svg.setAttribute("width", String(width));
  svg.setAttribute("role", "img");
  const max = Math.max(...rows.map(([, v]) => v), 0) || 1;
  rows.forEach(([label, value], i) => {
    const y = i * rowH;
    const text = (x, s, anchor) => {
      const t = document.createElementNS(SVG, "text");
      t.setAttribute("x", String(x));
      t.setAttribute("y", String(y + 15));
      t.setAttribute("text-anchor", anchor);
      t.textContent = s;
      return t;
    };
    const bar = document.createElementNS(SVG, "rect");
    bar.setAttribute("x", String(labelW));
    bar.setAttribute("y", String(y + 4));
    bar.setAttribute("height", String(rowH - 8));
    bar.setAttribute("width", String(Math.max(1, (value / max) * barW)));
    bar.setAttribute("class", "bar");
    svg.append(text(labelW - 6, label.length > 28 ? `${label.slice(0, 27)}…` : label, "end"), bar, text(labelW + barW + 6, format(value), "start"));
  });
  return svg;
}

function render(s) {
  const st = s.statuses;
  setText($("op-at"), `${s.at.slice(0, 19).replace("T", " ")} UTC`);
  setText($("op-now"), `${st.queued ?? 0} queued · ${st.running ?? 0} running`);
  setText($("op-ended"), `${st.succeeded ?? 0} succeeded · ${st.failed ?? 0} failed · ${st.cancelled ?? 0} cancelled`);
  setText($("op-queues"), s.queues.map((q) => `${q.queue} ${q.error ? "?" : q.tasks + (q.capped ? "+" : "")}`).join(" · "));
  setText($("op-sample"), `${s.sample} ended executions${s.sampleCapped ? ` (the newest ${s.sampleLimit} only)` : ""}`);
  setText($("op-wait"), secs(s.queueWaitS));
  setText($("op-ttft"), secs(s.timeToFirstTokenS));
  setText($("op-spend"), usd(s.projectSpendUsd) + (s.projectCapUsd ? ` of ${usd(s.projectCapUsd)} cap` : " (no cap)"));
  const failures = Object.entries(s.failuresByCode);
  $("op-failures").replaceChildren(failures.length ? barChart(failures, String) : document.createTextNode("none"));
  const models = s.spendByModel.slice(0, 8).map((m) => [m.model, m.costUsd]);
  $("op-models").replaceChildren(models.length ? barChart(models, usd) : document.createTextNode("none"));
  $("op-users").replaceChildren(...s.topUsers.map((u) => {
    const li = document.createElement("li");
    li.textContent = `${u.uid} · ${usd(u.costUsd)} · ${u.executions} executions`;
    return li;
  }));
}

/**
 * Wire the operator page; returns `watch(user)`: it shows the Operator link to an admin, and
 * while the address is #admin refreshes the figures every REFRESH_MS. Returns its unsubscribe.
 * @param {import("firebase/functions").Functions} functions
 */
export function setupOperator(functions) {
  const call = httpsCallable(functions, Callable.GET_ADMIN_STATS);
  return (user) => {
    let timer = null, admin = false, stopped = false;
    const refresh = async () => {
      timer = null;
      try {
        render((await call({})).data);
        $("op-error").hidden = true;
      } catch (err) {
        fail($("op-error"), err);
      }
      if (!stopped && location.hash === "#admin") timer = setTimeout(refresh, REFRESH_MS);
    };
    const route = () => {
      const shown = admin && location.hash === "#admin";
      $("operator-section").hidden = !shown;
      if (shown && timer === null) refresh();
    };
    user.getIdTokenResult().then((token) => {
      admin = token.claims.admin === true;
      document.body.dataset.operator = admin ? "yes" : "no";  // read: the tests wait for it
      $("operator-link").hidden = !admin;
      route();
    });
    window.addEventListener("hashchange", route);
    return () => {
      stopped = true;
      clearTimeout(timer);
      delete document.body.dataset.operator;
      window.removeEventListener("hashchange", route);
      $("operator-section").hidden = $("operator-link").hidden = true;
      clear();  // the next user to sign in on this page sees no figure of this one's
    };
  };
}

function clear() {
  for (const id of ["op-at", "op-now", "op-ended", "op-queues", "op-sample", "op-wait", "op-ttft", "op-spend"]) setText($(id), "");
  for (const id of ["op-failures", "op-models", "op-users"]) $(id).replaceChildren();
}
