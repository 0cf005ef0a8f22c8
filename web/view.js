// The execution view: status, text, reasoning, tokens, usage and cost, timings, error and
// the restart note, rendered from what watchExecution reports.

import { watchExecution } from "@promptq/web";
import { CostSource, ErrorField, Status, UsageField } from "@promptq/web/schema";
import { $, fail, setText, show } from "./dom.js";

let current = null;  // the execution shown: {id, handle, stopping, shown, attempt, text}

/**
 * The execution shown, if any.
 * @returns {?{id: string, handle: import("@promptq/web").ExecutionHandle, stopping: boolean}}
 */
export function currentExecution() {
  return current;
}

/**
 * Show execution `id` (replacing the one shown) and keep it up to date.
 * @param {import("firebase/firestore").Firestore} db
 * @param {string} id
 */
export function showExecution(db, id) {
  current?.handle.unsubscribe();
  if (location.hash !== `#/executions/${id}`) history.replaceState(null, "", `#/executions/${id}`);
  const view = { id, stopping: false, shown: "", attempt: null, text: document.createTextNode("") };
  $("output").replaceChildren(view.text);
  $("execution-id").textContent = id;
  for (const el of ["usage", "timings", "error", "restart-note", "reasoning-box", "json-box", "tool-calls-box"]) $(el).hidden = true;
  for (const el of ["status", "status-note", "served-model", "seq", "attempt", "tokens"]) $(el).textContent = "";
  $("status").textContent = "starting";
  $("execution").hidden = false;
  view.handle = watchExecution(db, id, {
    onUpdate: (state) => { if (current === view) render(view, state); },
    onError: (err) => { if (current === view) renderFailure(err); },
  });
  current = view;
}

/** Stop showing the execution (on sign-out). */
export function hideExecution() {
  current?.handle.unsubscribe();
  current = null;
  $("execution").hidden = true;
}

function renderFailure(err) {
  $("stop").disabled = true;
  if (err.code === "not-found") $("status").textContent = "not found";
  else fail($("error"), err, "cannot watch this execution: ");
}

/** @param {import("@promptq/web").ExecutionState} s */
function render(view, s) {
  setText($("status"), s.status);
  $("status").dataset.status = s.status;
  setText($("status-note"), s.live && (s.cancelRequested || view.stopping) ? "stop requested…"
    : s.providerWait?.until ? `waiting for the provider (${s.providerWait.model} is throttled) until ${s.providerWait.until.toLocaleTimeString()}…` : "");
  $("stop").disabled = !s.live || s.cancelRequested || view.stopping;
  $("seq").textContent = String(s.seq);
  $("attempt").textContent = String(s.attempt);
  $("served-model").textContent = s.model ?? `${s.requestedModel ?? "?"} (requested)`;
  $("output").setAttribute("aria-busy", String(s.live));
  renderText(view, s);
  renderReasoning(s);
  renderStructured(s);
  renderTokens(s);
  renderUsage(s);
  renderTimings(s);
  renderError(s);
}

function renderText(view, s) {
  if (s.text.startsWith(view.shown)) {
    view.text.appendData(s.text.slice(view.shown.length));  // only what arrived since
  } else {
    view.text.data = s.text;  // a new attempt started the answer over
  }
  if (s.restarted && view.attempt !== null && view.attempt !== s.attempt) {
    show($("restart-note"), `Attempt ${s.attempt} restarted the answer: the text of attempt ${view.attempt} was discarded.`);
  }
  view.shown = s.text;
  view.attempt = s.attempt;
}

function renderReasoning(s) {
  const reasoning = s.reasoning + (s.reasoningTruncated ? "\n[… reasoning cut: it outgrew its limit]" : "");
  $("reasoning-box").hidden = !reasoning;
  setText($("reasoning"), reasoning);
}

/**
 * A JSON answer formatted: what its text parses to while it streams (`partial`, with the fields
 * that are whole), then the checked value (`json`) once it succeeded; and the tools the model called.
 * @param {import("@promptq/web").ExecutionState} s
 */
function renderStructured(s) {
  const checked = s.json !== undefined;
  const value = checked ? s.json : s.partial;
  $("json-box").hidden = value === undefined;
  $("json-box").dataset.state = checked ? "checked" : "partial";
  if (value !== undefined) setText($("json"), JSON.stringify(value, null, 2));
  setText($("json-summary"), checked ? "JSON answer (parsed, checked)" : partialSummary(s));
  $("tool-calls-box").hidden = !s.toolCalls?.length;
  if (s.toolCalls?.length) {
    setText($("tool-calls"), s.toolCalls.map((c) => `${c.function.name}(${c.function.arguments})  [${c.id}]`).join("\n"));
  }
}

/** @param {import("@promptq/web").ExecutionState} s */
function partialSummary(s) {
  if (!s.live && s.status !== Status.SUCCEEDED) return "JSON answer as far as it parsed (not checked: it did not succeed)";
  const whole = s.partialComplete ?? [];
  return `JSON answer so far (streaming): ${whole.length ? `${whole.join(", ")} complete` : "no field complete yet"}`;
}

function renderTokens(s) {
  if (s.usage) {
    $("tokens").textContent = `${s.usage[UsageField.COMPLETION_TOKENS]} completion tokens (exact, from usage)`;
    return;
  }
  const words = plural((s.text.match(/\S+/g) ?? []).length, "word");
  const chars = plural([...s.text].length, "character");
  $("tokens").textContent = s.live || s.status === Status.CANCELLED
    ? `≈ ${words} · ${chars} arrived (approximate; exact token counts come with usage)`
    : `${words} · ${chars} received (no token counts reported)`;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? "" : "s"}`;
}

function renderUsage(s) {
  const usage = s.usage;
  if (s.live || (!usage && s.cost == null && s.status === Status.FAILED)) {
    $("usage").hidden = true;
    return;
  }
  let tokens;
  if (usage) {
    tokens = `Usage: ${usage[UsageField.PROMPT_TOKENS]} prompt + ${usage[UsageField.COMPLETION_TOKENS]} completion = ${usage[UsageField.TOTAL_TOKENS]} tokens`;
    if (usage[UsageField.REASONING_TOKENS]) tokens += ` (${usage[UsageField.REASONING_TOKENS]} reasoning)`;
  } else {
    tokens = s.status === Status.CANCELLED
      ? "Usage: not known yet (a stopped stream's usage is read from the upstream afterwards)"
      : "Usage: not reported";
  }
  let cost = s.cost == null ? "Cost: not reported" : `Cost: $${formatUsd(s.cost)} USD`;
  if (s.cost != null && s.costSource === CostSource.GENERATION) cost += " (from the upstream's generation record)";
  const costEl = Object.assign(document.createElement("span"), { id: "cost", textContent: cost });
  $("usage").replaceChildren(document.createTextNode(tokens + " · "), costEl);
  $("usage").hidden = false;
}

function formatUsd(value) {
  if (value === 0) return "0";
  return value >= 0.01 ? value.toFixed(4) : value.toPrecision(3);
}

function renderTimings(s) {
  const created = s.createdAt?.getTime();
  const secs = (date) => `${((date.getTime() - created) / 1000).toFixed(2)} s`;
  const parts = [];
  if (created && s.startedAt) parts.push(`queued ${secs(s.startedAt)}`);
  if (created && s.firstTokenAt) parts.push(`first token after ${secs(s.firstTokenAt)}`);
  if (created && s.finishedAt) parts.push(`total ${secs(s.finishedAt)}`);
  if (s.finishReason) parts.push(`finish reason: ${s.finishReason}`);
  show($("timings"), s.live || !parts.length ? "" : "Timings: " + parts.join(" · "));
}

function renderError(s) {
  if (!s.error) {
    $("error").hidden = true;
    return;
  }
  const upstream = s.error[ErrorField.UPSTREAM_STATUS] ? ` (upstream HTTP ${s.error[ErrorField.UPSTREAM_STATUS]})` : "";
  show($("error"), `${s.error[ErrorField.CODE]}: ${s.error[ErrorField.MESSAGE]}${upstream}`);
}
