// watchExecution: follow one promptq execution (`executions/{id}`) from a browser app.
//
//   import { watchExecution } from "@promptq/web";
//   const handle = watchExecution(db, id, { onUpdate: (s) => render(s.text), onError: console.error });
//   const final = await handle.done;   // status terminal, whole text assembled
//
// It imports the Firestore SDK by its bare name, "firebase/firestore": bundlers (Vite,
// webpack) resolve it from node_modules; a page without a bundler maps it with an import map.
// The document's field names come from ./schema.js (generated from promptq/contract).

import { collection, doc, getDoc, getDocs, onSnapshot, orderBy, query, serverTimestamp, Timestamp, where, writeBatch } from "firebase/firestore";
import { settle } from "./settle.js";
import { assembly, parsed } from "./text.js";
import { ChunkField, CHUNKS, EXECUTIONS, ExecutionField, LIVE, OutputFormat, PAGES, StopField, Status, STOPS, WORKERS } from "./schema.js";

/** @import { DocumentData, DocumentReference, Firestore } from "firebase/firestore" */
/** @import { Code, CostSource } from "./schema.js" */
/** @import { ToolCall } from "./request.js" */
/** @import { Settled } from "./settle.js" */
/** @import { Assembled } from "./text.js" */

/**
 * An execution's status: queued | running | succeeded | failed | cancelled.
 * @typedef {(typeof Status)[keyof typeof Status]} ExecutionStatus
 */

/**
 * An execution's `error.code`: upstream_bad_request, upstream_rate_limited, stream_stalled, …
 * @typedef {(typeof Code)[keyof typeof Code]} ErrorCode
 */

/**
 * @typedef {object} Usage
 * @property {number} promptTokens
 * @property {number} completionTokens
 * @property {number} totalTokens
 * @property {number} [reasoningTokens]
 * @property {number} [cachedTokens]      prompt tokens read from a prompt cache (billed at its read price)
 * @property {number} [cacheWriteTokens]  prompt tokens written to it (billed at its write price)
 */

/**
 * Why an execution failed.
 * @typedef {object} ExecutionError
 * @property {ErrorCode} code
 * @property {string} message
 * @property {number} [upstreamStatus]  the upstream's HTTP status, when it answered one
 */

/**
 * What `onUpdate` receives, and what `done` resolves with.
 * @typedef {object} ExecutionState
 * @property {ExecutionStatus} status
 * @property {boolean} live             true while queued or running
 * @property {string} text              the whole answer so far
 * @property {string} reasoning         reasoning text of thinking models ("" when none)
 * @property {boolean} reasoningTruncated  the reasoning outgrew its cap and was cut
 * @property {number} attempt           the attempt whose text `text` is
 * @property {number} seq               the execution document's version (it never goes back)
 * @property {boolean} restarted        a new attempt replaced text this watcher had reported
 * @property {Usage | null} usage
 * @property {number | null} cost             USD
 * @property {(typeof CostSource)[keyof typeof CostSource] | null} costSource  "generation" when reconciled after a cancel
 * @property {ExecutionError | null} error
 * @property {string | null} model            the model that served
 * @property {string | null} requestedModel   the model the request named
 * @property {string | null} finishReason   "tool_calls" when the model called tools
 * @property {unknown} [json]              a JSON answer (`response_format`) that succeeded: its parsed value
 * @property {unknown} [partial]           a JSON answer (`outputFormat: "json"`) so far: what its text parses to
 *   (undefined while it is not JSON), parsed as the text grows by an eighth, up to 256 Ki characters; once
 *   it succeeded, `json`
 * @property {Array<string | number>} [partialComplete]  the top-level keys (an array's indices) of `partial`
 *   whose values are whole, in order
 * @property {ToolCall[] | null} toolCalls  the tools the model called
 * @property {boolean} cancelRequested
 * @property {{reason: string, model: string, until: Date | null, message: string} | null} providerWait
 *   queued, waiting for a throttled provider until `until` (nothing fails; no attempt is spent)
 * @property {Date | null} createdAt
 * @property {Date | null} startedAt
 * @property {Date | null} firstTokenAt
 * @property {Date | null} finishedAt
 */

/**
 * @typedef {object} ExecutionCallbacks
 * @property {(state: ExecutionState) => void} [onUpdate]  every change: status, text, usage, …
 * @property {(err: Error & {code?: string}) => void} [onError]  the listener failed (`code`: Firestore's, or "not-found")
 */

/**
 * @typedef {object} ExecutionHandle
 * @property {() => Promise<void>} stop   ask the worker to stop (sets `cancelRequested: true`)
 * @property {() => void} unsubscribe     stop listening
 * @property {Promise<ExecutionState>} done  the final state: terminal status, whole text;
 *   rejects when the listener fails. Listening goes on after it (a cancelled execution's
 *   usage and cost arrive later) until `unsubscribe()`.
 * @property {number} chunksRead          chunk documents received (each once)
 * @property {number} pagesRead           page documents read (only for an execution that ended before it was watched)
 */

/**
 * Watch `executions/{executionId}`: the execution document (status, attempt, usage, cost: it
 * changes at transitions only) and the chunks of its current attempt (the text as it streams,
 * each chunk received once, in order). A new attempt restarted the text: its chunks replace
 * the old ones. An execution that ended before it was watched is read from its pages.
 * @param {Firestore} db  signed in as the execution's owner
 * @param {string} executionId
 * @param {ExecutionCallbacks} [callbacks]
 * @returns {ExecutionHandle}
 */
export function watchExecution(db, executionId, { onUpdate = () => {}, onError = () => {} } = {}) {
  const ref = doc(db, EXECUTIONS, executionId);
  /** @type {Settled<ExecutionState>} */
  const done = settle();
  const text = textFollower(ref, () => report(), (err) => fail(err));
  let listening = true;
  let latest = /** @type {DocumentData | null} */ (null);  // the execution document last seen
  let reported = /** @type {ExecutionState | null} */ (null);  // the state last reported

  function report() {
    if (!listening || !latest) return;
    const assembled = text.current();
    const restarted = !!reported && (reported.attempt === assembled.attempt ? reported.restarted : reported.text !== "");
    const whole = !LIVE.includes(latest[ExecutionField.STATUS]) && text.complete(latest);
    const state = toState(latest, assembled, restarted, whole);
    reported = state;
    onUpdate(state);
    if (whole) done.resolve(state);
  }

  /** @param {Error} err */
  function fail(err) {
    if (!listening) return;  // after unsubscribe(): nobody listens any more
    unsubscribe();
    onError(err);
    done.reject(err);
  }

  const unlisten = onSnapshot(ref, (snap) => {
    if (!snap.exists()) return fail(Object.assign(new Error(`no execution ${executionId}`), { code: "not-found" }));
    const d = snap.data();
    if (latest && (d[ExecutionField.SEQ] ?? 0) < (latest[ExecutionField.SEQ] ?? 0)) return;  // an older version than the one seen
    latest = d;
    text.follow(d).then(report, fail);
  }, fail);

  function unsubscribe() {
    listening = false;
    unlisten();
    text.stop();
  }

  return {
    stop: () => stopExecution(db, executionId),
    unsubscribe,
    done: done.promise,
    get chunksRead() { return text.chunksRead; },
    get pagesRead() { return text.pagesRead; },
  };
}

/**
 * Ask the worker to stop execution `executionId` (Stop): sets `cancelRequested: true`, the one
 * field its owner may write, and tells the worker process running it
 * (`workers/{worker}/stops/{executionId}`, in the same batch: the rules allow it only there).
 * It ends `cancelled`, keeping the text it had. Nothing happens to an execution that ended.
 * @param {Firestore} db  signed in as the execution's owner
 * @param {string} executionId
 * @returns {Promise<void>}
 */
export async function stopExecution(db, executionId) {
  const ref = doc(db, EXECUTIONS, executionId);
  for (let tries = 1; ; tries++) {
    const d = (await getDoc(ref)).data();
    if (!d || !LIVE.includes(d[ExecutionField.STATUS]) || d[ExecutionField.CANCEL_REQUESTED] === true) return;
    const batch = writeBatch(db).update(ref, { [ExecutionField.CANCEL_REQUESTED]: true });
    const expireAt = Timestamp.fromMillis(Date.now() + 86_400_000); // TTL deletes it a day later
    if (d[ExecutionField.WORKER]) batch.set(doc(db, WORKERS, d[ExecutionField.WORKER], STOPS, executionId), { [StopField.REQUESTED_AT]: serverTimestamp(), [StopField.EXPIRE_AT]: expireAt });
    // Denied when it changed in between (another process claimed it, or it ended): read again.
    try { return await batch.commit(); } catch (/** @type {any} */ err) { if (tries === 3 || err?.code !== "permission-denied") throw err; }
  }
}

/**
 * The text of the execution's current attempt, and nothing else: its chunks, followed by a
 * query listener (each received once, in order), or its pages when it had ended before.
 * @param {DocumentReference} ref
 * @param {() => void} changed
 * @param {(err: Error) => void} fail
 */
function textFollower(ref, changed, fail) {
  let text = assembly(null);
  let unlisten = () => {};
  const counts = { chunksRead: 0, pagesRead: 0 };

  /** @param {DocumentData} d */
  async function follow(d) {
    const current = d[ExecutionField.ATTEMPT] ?? 0;
    if (current === text.attempt) return;
    const first = text.attempt === null;
    unlisten();
    unlisten = () => {};
    text = assembly(current);
    if (first && !LIVE.includes(d[ExecutionField.STATUS])) {
      await (d[ExecutionField.OUTPUT_PAGES] ? readAll(PAGES, "pagesRead") : readAll(CHUNKS, "chunksRead"));  // ended before we came
    } else if (current > 0) {
      unlisten = onSnapshot(query(collection(ref, CHUNKS), where(ChunkField.ATTEMPT, "==", current), orderBy(ChunkField.SEQ)), (snap) => {
        for (const change of snap.docChanges()) if (change.type === "added") add(change.doc.data(), "chunksRead");
        changed();
      }, fail);
    }
  }

  // Pages and chunks share their field names (attempt, start, end, text, reasoning).
  /** @param {string} source @param {keyof typeof counts} counter */
  async function readAll(source, counter) {
    const snap = await getDocs(query(collection(ref, source), where(ChunkField.ATTEMPT, "==", text.attempt), orderBy(ChunkField.END)));
    for (const d of snap.docs) add(d.data(), counter);
  }

  /** @param {DocumentData} piece @param {keyof typeof counts} counter */
  function add(piece, counter) {
    counts[counter] += 1;
    text.add(piece);
  }

  return {
    follow,
    current: () => text.current(),
    // Ended, and every character of it here (an ending without a length: nothing more comes).
    /** @param {DocumentData} d */
    complete: (d) => d[ExecutionField.OUTPUT_LENGTH] == null || text.length >= d[ExecutionField.OUTPUT_LENGTH],
    stop: () => unlisten(),
    get chunksRead() { return counts.chunksRead; },
    get pagesRead() { return counts.pagesRead; },
  };
}

/**
 * A document's `providerWait`, its times as Dates.
 * @param {any} wait
 * @returns {{reason: string, model: string, until: Date | null, message: string} | null}
 */
function waitOf(wait) {
  if (!wait) return null;
  return { reason: wait.reason, model: wait.model ?? "", until: wait.until?.toDate?.() ?? null, message: wait.message ?? "" };
}

/**
 * @param {DocumentData} d
 * @param {Assembled} assembled
 * @param {boolean} restarted
 * @param {boolean} whole  ended, and all its text here
 * @returns {ExecutionState}
 */
function toState(d, { attempt, text, reasoning, partial }, restarted, whole) {
  /** @param {string} field */
  const date = (field) => d[field]?.toDate?.() ?? null;
  const status = d[ExecutionField.STATUS];
  const isJson = d[ExecutionField.OUTPUT_FORMAT] === OutputFormat.JSON;
  const json = status === Status.SUCCEEDED && isJson ? parsed(text) : undefined;
  const sofar = !isJson ? {} : whole && status === Status.SUCCEEDED ? partial.settle(json) : partial.update(text, whole);
  return {
    status,
    live: LIVE.includes(status),
    text,
    reasoning,
    reasoningTruncated: d[ExecutionField.REASONING_TRUNCATED] === true,
    attempt,
    seq: d[ExecutionField.SEQ] ?? 0,
    restarted,
    usage: d[ExecutionField.USAGE] ?? null,
    cost: d[ExecutionField.COST] ?? null,
    costSource: d[ExecutionField.COST_SOURCE] ?? null,
    error: d[ExecutionField.ERROR] ?? null,
    model: d[ExecutionField.MODEL] ?? null,
    requestedModel: d[ExecutionField.REQUESTED_MODEL] ?? null,
    finishReason: d[ExecutionField.FINISH_REASON] ?? null,
    json,
    ...sofar,
    toolCalls: d[ExecutionField.TOOL_CALLS] ?? null,
    cancelRequested: d[ExecutionField.CANCEL_REQUESTED] === true,
    providerWait: waitOf(d[ExecutionField.PROVIDER_WAIT]),
    createdAt: date(ExecutionField.CREATED_AT),
    startedAt: date(ExecutionField.STARTED_AT),
    firstTokenAt: date(ExecutionField.FIRST_TOKEN_AT),
    finishedAt: date(ExecutionField.FINISHED_AT),
  };
}
