// Batch runs on the page: the user's last batches (live), and a batch's view (#/batches/{id}):
// its counts and progress (watchBatch: its document, folded about once a second) and its items
// with their status (live), each a link to watch that execution stream.

import { resumeBatch, watchBatch } from "@promptq/web";
import { BatchField, BATCHES, Count, EXECUTIONS, ExecutionField } from "@promptq/web/schema";
import { collection, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";
import { usd } from "./account.js";
import { $, fail, setText, show } from "./dom.js";

const ITEMS_SHOWN = 200;
let shown = null;  // {id, stop}

/** "12 of 40 done · 10 succeeded · 2 failed · 0 cancelled · 3 running · $0.0012" */
export function countsLine(counts, cost) {
  const done = counts[Count.SUCCEEDED] + counts[Count.FAILED] + counts[Count.CANCELLED];
  return `${done} of ${counts[Count.TOTAL]} done · ${counts[Count.SUCCEEDED]} succeeded · ${counts[Count.FAILED]} failed · `
    + `${counts[Count.CANCELLED]} cancelled · ${counts[Count.RUNNING]} running · ${usd(cost ?? 0)}`;
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
      li.append(link(`#/batches/${snap.id}`, snap.id, span("status", b[BatchField.STATUS], b[BatchField.STATUS]), span("title", b[BatchField.TITLE]),
        span("counts", countsLine(b[BatchField.COUNTS], b[BatchField.COST]))));
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
    onUpdate: ({ status, counts, cost, lanesActive, lanesParked, waitingFor, providerWait }) => {
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
    },
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
