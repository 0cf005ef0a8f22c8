// watchBatch: follow one batch run (`batches/{batchId}`): its status, counts and totals as the
// server folds them from the items (about once a second; exact once it ended).
//
//   import { watchBatch } from "@promptq/web";
//   const handle = watchBatch(db, batchId, { onUpdate: (b) => render(b.counts) });
//   const final = await handle.done;   // completed or cancelled

import { doc, onSnapshot } from "firebase/firestore";
import { cancelBatch } from "./calls.js";
import { settle } from "./settle.js";
import { BatchField, BATCH_TERMINAL, BATCHES, Count } from "./schema.js";

/** @import { DocumentData, Firestore } from "firebase/firestore" */
/** @import { Functions } from "firebase/functions" */
/** @import { BatchCounts, BatchStatusName } from "./calls.js" */
/** @import { Settled } from "./settle.js" */

/**
 * What `onUpdate` receives, and what `done` resolves with.
 * @typedef {object} BatchState
 * @property {string} batchId
 * @property {BatchStatusName} status
 * @property {boolean} live            not ended yet (queued, running, paused or cancelling)
 * @property {BatchCounts} counts      of the items' newest executions (a retried item counts once)
 * @property {{promptTokens?: number, completionTokens?: number}} usage  of the executions that ended
 * @property {number} cost             USD, of the executions that ended
 * @property {number} executions       executions that ended (retries included)
 * @property {string | null} title     the first item's first words
 * @property {number} maxConcurrency
 * @property {number} round            0; +1 for each retry_batch
 * @property {boolean} cancelRequested
 * @property {Date | null} createdAt
 * @property {Date | null} startedAt
 * @property {Date | null} finishedAt
 * @property {Date | null} foldedAt    the instant the counts describe
 * @property {number} lanesActive      lanes running now (fair share: a user's and the project's caps)
 * @property {number} lanesParked      lanes waiting for a cap; nothing is lost: they start as lanes end
 * @property {string | null} waitingFor  the cap they wait for: "user_cap" | "project_cap"
 * @property {BatchProviderWait | null} providerWait  its items wait for the provider; status "paused" for credit or a daily cap
 * @property {BatchLaneName} lane      the lane its current round runs on
 * @property {UpstreamProgress | null} upstream  the discounted lane: its current round's upstream batches (null: none yet, or streamed)
 */

/**
 * How a batch's items run: "stream" (each streamed as it runs, at the standard price) or
 * "discounted" (OpenRouter's Batch API at about half price; results when each upstream batch ends).
 * @typedef {"stream" | "discounted"} BatchLaneName
 */

/**
 * The discounted lane's upstream batches of the current round, as the last poll read them.
 * @typedef {object} UpstreamProgress
 * @property {number} batches    how many upstream batches its items make
 * @property {number} submitted  of them, accepted by OpenRouter
 * @property {number} ended      of them, ended upstream and their results written
 * @property {number} total      requests in the submitted ones (OpenRouter's request counts)
 * @property {number} completed
 * @property {number} failed
 */

/**
 * What a batch's items wait for: a throttled model (it runs on by itself at `until`), spent
 * credit (paused until `resumeBatch`), a free model's daily cap (paused until `until`).
 * @typedef {object} BatchProviderWait
 * @property {"throttle" | "daily_cap" | "credit"} reason
 * @property {string} model
 * @property {Date | null} until    null: until resumed
 * @property {Date | null} since
 * @property {string} message
 */

/**
 * @typedef {object} BatchCallbacks
 * @property {(state: BatchState) => void} [onUpdate]  every fold, cancel and retry
 * @property {(err: Error & {code?: string}) => void} [onError]  the listener failed (`code`: Firestore's, or "not-found")
 * @property {Functions} [functions]  what `stop()` calls `cancel_batch` with
 */

/**
 * @typedef {object} BatchHandle
 * @property {() => Promise<void>} stop    cancel the batch (`cancel_batch`: needs `functions`)
 * @property {() => void} unsubscribe      stop listening
 * @property {Promise<BatchState>} done    the final state (completed or cancelled, exact counts);
 *   rejects when the listener fails
 * @property {BatchCounts | null} counts   the counts last seen (null before the first snapshot)
 */

/**
 * Watch `batches/{batchId}` until `unsubscribe()`.
 * @param {Firestore} db  signed in as the batch's owner
 * @param {string} batchId
 * @param {BatchCallbacks} [callbacks]
 * @returns {BatchHandle}
 */
export function watchBatch(db, batchId, { onUpdate = () => {}, onError = () => {}, functions } = {}) {
  /** @type {Settled<BatchState>} */
  const done = settle();
  /** @type {BatchState | null} */
  let latest = null;
  let listening = true;

  /** @param {Error} err */
  function fail(err) {
    if (!listening) return;
    unsubscribe();
    onError(err);
    done.reject(err);
  }

  const unlisten = onSnapshot(doc(db, BATCHES, batchId), (snap) => {
    if (!snap.exists()) return fail(Object.assign(new Error(`no batch ${batchId}`), { code: "not-found" }));
    const state = toBatchState(batchId, snap.data());
    latest = state;
    onUpdate(state);
    if (!state.live) done.resolve(state);
  }, fail);

  function unsubscribe() {
    listening = false;
    unlisten();
  }

  async function stop() {
    if (!functions) throw new TypeError("watchBatch: pass {functions} to stop a batch (stop() calls cancel_batch)");
    await cancelBatch(functions, batchId);
  }

  return {
    stop,
    unsubscribe,
    done: done.promise,
    get counts() { return latest && latest.counts; },
  };
}

/** @type {BatchCounts} */
const NO_COUNTS = {
  [Count.TOTAL]: 0, [Count.QUEUED]: 0, [Count.RUNNING]: 0, [Count.SUCCEEDED]: 0, [Count.FAILED]: 0, [Count.CANCELLED]: 0,
};

/**
 * @param {string} batchId
 * @param {DocumentData} b
 * @returns {BatchState}
 */
function toBatchState(batchId, b) {
  /** @param {string} field */
  const date = (field) => b[field]?.toDate?.() ?? null;
  const status = b[BatchField.STATUS];
  return {
    batchId,
    status,
    live: !BATCH_TERMINAL.includes(status),
    counts: { ...NO_COUNTS, ...b[BatchField.COUNTS] },
    usage: b[BatchField.USAGE] ?? {},
    cost: b[BatchField.COST] ?? 0,
    executions: b[BatchField.EXECUTIONS] ?? 0,
    title: b[BatchField.TITLE] ?? null,
    maxConcurrency: b[BatchField.MAX_CONCURRENCY] ?? 0,
    round: b[BatchField.ROUND] ?? 0,
    cancelRequested: b[BatchField.CANCEL_REQUESTED] === true,
    createdAt: date(BatchField.CREATED_AT),
    startedAt: date(BatchField.STARTED_AT),
    finishedAt: date(BatchField.FINISHED_AT),
    foldedAt: date(BatchField.FOLDED_AT),
    lanesActive: b[BatchField.LANES_ACTIVE] ?? 0,
    lanesParked: b[BatchField.LANES_PARKED] ?? 0,
    waitingFor: b[BatchField.WAITING_FOR] ?? null,
    providerWait: providerWait(b[BatchField.PROVIDER_WAIT]),
    lane: b[BatchField.LANE] ?? "stream",
    upstream: b[BatchField.UPSTREAM] ?? null,
  };
}

/**
 * A document's `providerWait`, its times as Dates.
 * @param {any} wait
 * @returns {BatchProviderWait | null}
 */
function providerWait(wait) {
  if (!wait) return null;
  /** @param {any} t */
  const date = (t) => t?.toDate?.() ?? null;
  return { reason: wait.reason, model: wait.model ?? "", until: date(wait.until), since: date(wait.since), message: wait.message ?? "" };
}
