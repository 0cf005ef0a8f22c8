// Batch runs on the page: the batch form (startBatch: one prompt a line, on the lane chosen),
// the user's last batches (live), and a batch's view (#/batches/{id}): its counts and progress
// (watchBatch: its document, folded about once a second), its lane (on the discounted lane: its
// upstream batches' progress) and its items with their status (live), each a link to watch that
// execution stream.

import { resumeBatch, startBatch, watchBatch } from "@promptq/web";
import { BatchField, BATCHES, Count, EXECUTIONS, ExecutionField } from "@promptq/web/schema";
import { collection, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";
import { usd } from "./account.js";
import { $, fail, setText, show } from "./dom.js";

const ITEMS_SHOWN = 200;
const MAX_LINES = 1000;  // prompts the form takes in one batch
let shown = null;  // {id, stop}

/** "12 of 40 done · 10 succeeded · 2 failed · 0 cancelled · 3 running · $0.0012" */
export function countsLine(counts, cost) {
  const done = counts[Count.SUCCEEDED] + counts[Count.FAILED] + counts[Count.CANCELLED];
  return `${done} of ${counts[Count.TOTAL]} done · ${counts[Count.SUCCEEDED]} succeeded · ${counts[Count.FAILED]} failed · `
    + `${counts[Count.CANCELLED]} cancelled · ${counts[Count.RUNNING]} running · ${usd(cost ?? 0)}`;
}

/** The discounted lane's upstream batches: "2 batches upstream · 1 submitted · 0 ended · 340 of 5000 requests done · 2 failed". */
export function upstreamLine(upstream) {
  if (!upstream) return "";
  const n = upstream.batches ?? 0;
  return `${n} ${n === 1 ? "batch" : "batches"} upstream · ${upstream.submitted ?? 0} submitted · ${upstream.ended ?? 0} ended · `
    + `${upstream.completed ?? 0} of ${upstream.total ?? 0} requests done · ${upstream.failed ?? 0} failed`;
}

/** What the lane means for a batch ("" on the stream lane). */
export function laneLine(lane) {
  return lane === "discounted" ? "Discounted lane (OpenRouter Batch API, about half price): results arrive as each upstream batch ends." : "";
}

function link(href, id, ...children) {
  const a = document.createElement("a");
  a.href = href;
  a.dataset.id = id;
  a.append(...children);
  return a;
}

function span(className, text, status) {
  const el = document.createElement("span");
  el.className = className;
  el.textContent = text ?? "";
  if (status) el.dataset.status = status;
  return el;
}

/** The user's last 10 batches, live; returns the unsubscribe. */
export function watchBatches(db, uid) {
  const mine = query(collection(db, BATCHES), where(BatchField.OWNER, "==", uid), orderBy(BatchField.CREATED_AT, "desc"), limit(10));
  return onSnapshot(mine, (snaps) => {
    $("batches-section").hidden = snaps.empty;
    $("batches").replaceChildren(...snaps.docs.map((snap) => {
      const b = snap.data();
      const li = document.createElement("li");
      const lane = b[BatchField.LANE] === "discounted" ? " · discounted" : "";
      li.append(link(`#/batches/${snap.id}`, snap.id, span("status", b[BatchField.STATUS], b[BatchField.STATUS]), span("title", b[BatchField.TITLE]),
        span("counts", countsLine(b[BatchField.COUNTS], b[BatchField.COST]) + lane)));
      return li;
    }));
  }, (err) => fail($("batch-error"), err));
}

/** What a batch's items wait for, in words ("" when they wait for nothing). */
export function waitLine(wait) {
  if (!wait) return "";
  const until = wait.until ? ` until ${wait.until.toLocaleTimeString()}` : "";
  if (wait.reason === "credit") return `Paused: the OpenRouter key cannot pay (${wait.message}). Resume once credit is back.`;
  if (wait.reason === "daily_cap") return `Paused: ${wait.model}'s free daily requests are used up${until}; it resumes by itself then.`;
  return `Waiting for the provider: ${wait.model} is throttled${until}. Nothing fails; it runs on by itself.`;
}

/** One update of the batch's view (`functions`: whether Resume can be offered). */
function renderBatch({ status, counts, cost, lanesActive, lanesParked, waitingFor, providerWait, lane, upstream }, functions) {
  setText($("batch-status"), status);
  setText($("batch-wait"), waitLine(providerWait));
  $("batch-wait").hidden = !providerWait;
  $("batch-resume").hidden = status !== "paused" || !functions;
  // Fair share: lanes beyond the user's (or the project's) cap wait, parked, until lanes end.
  setText($("batch-lanes"), lanesParked ? `${lanesActive} lanes running · ${lanesParked} waiting for the `
    + `${waitingFor === "project_cap" ? "project's" : "your"} cap on batch lanes` : "");
  $("batch-status").dataset.status = status;
  setText($("batch-counts"), countsLine(counts, cost));
  $("batch-progress").max = counts[Count.TOTAL];
  $("batch-progress").value = counts[Count.SUCCEEDED] + counts[Count.FAILED] + counts[Count.CANCELLED];
  // The discounted lane: its results come as each upstream batch ends, not one by one.
  setText($("batch-lane"), laneLine(lane));
  $("batch-lane").hidden = !laneLine(lane);
  setText($("batch-upstream"), upstreamLine(upstream));
  $("batch-upstream").hidden = !upstream;
}

/** Show batch `id` (#/batches/{id}) and keep it up to date (`functions`: Resume calls resume_batch). */
export function showBatch(db, uid, id, functions) {
  hideBatch();
  $("batch-view").hidden = false;
  $("batch-id").textContent = id;
  $("batch-resume").onclick = async () => {
    $("batch-resume").disabled = true;
    try {
      await resumeBatch(functions, id);
    } catch (err) {
      fail($("batch-error"), err);
    } finally {
      $("batch-resume").disabled = false;
    }
  };
  const batch = watchBatch(db, id, {
    onUpdate: (state) => renderBatch(state, functions),
    onError: (err) => (err.code === "not-found" ? show($("batch-error"), "not found") : fail($("batch-error"), err)),
  });
  // The rules let a user query only their own executions: the query says so (ownerUid).
  const items = query(collection(db, EXECUTIONS), where(ExecutionField.OWNER, "==", uid), where(ExecutionField.BATCH_ID, "==", id), where(ExecutionField.LATEST, "==", true),
    orderBy(ExecutionField.INDEX), limit(ITEMS_SHOWN));
  const stopItems = onSnapshot(items, (snaps) => {
    $("batch-items").replaceChildren(...snaps.docs.map((snap) => {
      const d = snap.data();
      const li = document.createElement("li");
      li.append(link(`#/executions/${snap.id}`, snap.id, span("index", `#${d[ExecutionField.INDEX]}`), span("status", d[ExecutionField.STATUS], d[ExecutionField.STATUS]),
        span("custom-id", d[ExecutionField.CUSTOM_ID]), span("title", d[ExecutionField.TITLE]), span("cost", d[ExecutionField.COST] != null ? usd(d[ExecutionField.COST]) : "")));
      return li;
    }));
  }, (err) => fail($("batch-error"), err));
  shown = { id, stop: () => { batch.unsubscribe(); stopItems(); } };
}

/** Stop showing the batch (another view, or sign-out). */
export function hideBatch() {
  shown?.stop();
  shown = null;
  $("batch-view").hidden = true;
}

export const shownBatch = () => shown?.id ?? null;

/** The items the prompts describe: each non-empty line one, `line-<n>` (n counts the non-empty lines from 1). */
export function lineItems(text) {
  return text.split(/\r?\n/).filter((line) => line.trim()).map((prompt, i) => ({ customId: `line-${i + 1}`, prompt }));
}

/** A fresh idempotency key: one per press of Start (crypto.randomUUID needs a secure context). */
function freshKey() {
  return crypto.randomUUID?.() ?? Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * The batch form's request, or what is wrong with it in words. Its model: the form's own, else
 * the prompt form's (as Run sends it), else none (the server's default).
 */
function batchRequest() {
  const items = lineItems($("batch-prompts").value);
  if (!items.length) return "Write at least one prompt, one per line.";
  if (items.length > MAX_LINES) return `${items.length} prompts: a batch from this form takes at most ${MAX_LINES.toLocaleString("en")} lines.`;
  const model = $("batch-model").value.trim() || $("model").value.trim();
  const lane = /** @type {HTMLSelectElement} */ ($("batch-lane-choice")).value;
  return { items, ...(model ? { model } : {}), lane, idempotencyKey: freshKey() };
}

/** Wire the batch form: Start calls start_batch, then the page follows the batch (#/batches/{id}). */
export function setupBatchForm(functions) {
  $("batch-run-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const start = $("batch-start");
    $("batch-form-error").hidden = true;
    const request = batchRequest();
    if (typeof request === "string") {
      show($("batch-form-error"), request);
      return;
    }
    start.disabled = true;
    start.textContent = "Starting…";
    try {
      const { batchId } = await startBatch(functions, request);
      location.hash = `#/batches/${batchId}`;  // app.js's hashchange handler shows it
    } catch (err) {
      fail($("batch-form-error"), err);
    } finally {
      start.disabled = false;
      start.textContent = "Start batch";
    }
  });
}
