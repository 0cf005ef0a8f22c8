// watchExecution: follow one promptq execution (`executions/{id}`) from a browser app.
//
//   import { watchExecution } from "./watch.js";
//   const handle = watchExecution(db, id, { onUpdate: (s) => render(s.text), onError: console.error });
//   const final = await handle.done;   // status terminal, whole text assembled
//
// It imports the Firestore SDK by its bare name, "firebase/firestore": bundlers (Vite,
// webpack) resolve it from node_modules; a page without a bundler maps it with an import map.
// The document's field names come from ./schema.js (generated from promptq/schema.py).

import { collection, doc, getDocs, onSnapshot, orderBy, query, updateDoc, where } from "firebase/firestore";
import { C, CHUNKS, EXECUTIONS, F, LIVE, PAGES } from "./schema.js";

/**
 * What `onUpdate` receives, and what `done` resolves with.
 * @typedef {object} ExecutionState
 * @property {string} status            queued | running | succeeded | failed | cancelled
 * @property {boolean} live             true while queued or running
 * @property {string} text              the whole answer so far
 * @property {string} reasoning         reasoning text of thinking models ("" when none)
 * @property {boolean} reasoningTruncated  the reasoning outgrew its cap and was cut
 * @property {number} attempt           the attempt whose text `text` is
 * @property {number} seq               the execution document's version (it never goes back)
 * @property {boolean} restarted        a new attempt replaced text this watcher had reported
 * @property {?{promptTokens: number, completionTokens: number, totalTokens: number, reasoningTokens?: number}} usage
 * @property {?number} cost             USD
 * @property {?string} costSource       "generation" when reconciled after a cancel
 * @property {?{code: string, message: string, upstreamStatus?: number}} error
 * @property {?string} model            the model that served
 * @property {?string} requestedModel   the model the request named
 * @property {?string} finishReason
 * @property {boolean} cancelRequested
 * @property {?Date} createdAt
 * @property {?Date} startedAt
 * @property {?Date} firstTokenAt
 * @property {?Date} finishedAt
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
 * @param {import("firebase/firestore").Firestore} db
 * @param {string} executionId
 * @param {{onUpdate?: (state: ExecutionState) => void, onError?: (err: Error) => void}} [callbacks]
 * @returns {ExecutionHandle}
 */
export function watchExecution(db, executionId, { onUpdate = () => {}, onError = () => {} } = {}) {
  const ref = doc(db, EXECUTIONS, executionId);
  const done = settle();
  const text = textFollower(ref, () => report(), (err) => fail(err));
  let listening = true;
  let latest = null;  // the execution document last seen
  let reported = null;  // the state last reported

  function report() {
    if (!listening || !latest) return;
    const assembled = text.current();
    const restarted = !!reported && (reported.attempt === assembled.attempt ? reported.restarted : reported.text !== "");
    reported = toState(latest, assembled, restarted);
    onUpdate(reported);
    if (!reported.live && text.complete(latest)) done.resolve(reported);
  }

  function fail(err) {
    if (!listening) return;  // after unsubscribe(): nobody listens any more
    unsubscribe();
    onError(err);
    done.reject(err);
  }

  const unlisten = onSnapshot(ref, (snap) => {
    if (!snap.exists()) return fail(Object.assign(new Error(`no execution ${executionId}`), { code: "not-found" }));
    const d = snap.data();
    if (latest && (d[F.SEQ] ?? 0) < (latest[F.SEQ] ?? 0)) return;  // an older version than the one seen
    latest = d;
    text.follow(d).then(report, fail);
  }, fail);

  function unsubscribe() {
    listening = false;
    unlisten();
    text.stop();
  }

  return {
    stop: () => updateDoc(ref, { [F.CANCEL_REQUESTED]: true }),
    unsubscribe,
    done: done.promise,
    get chunksRead() { return text.chunksRead; },
    get pagesRead() { return text.pagesRead; },
  };
}

// The text of the execution's current attempt, and nothing else: its chunks, followed by a
// query listener (each received once, in order), or its pages when it had ended before.
function textFollower(ref, changed, fail) {
  let attempt = null;
  let pieces = [];
  let thoughts = [];  // reasoning, beside the text
  let length = 0;  // code points received
  let unlisten = () => {};
  const counts = { chunksRead: 0, pagesRead: 0 };

  async function follow(d) {
    const current = d[F.ATTEMPT] ?? 0;
    if (current === attempt) return;
    const first = attempt === null;
    unlisten();
    unlisten = () => {};
    [attempt, pieces, thoughts, length] = [current, [], [], 0];
    if (first && !LIVE.includes(d[F.STATUS])) {
      await (d[F.OUTPUT_PAGES] ? readAll(PAGES, "pagesRead") : readAll(CHUNKS, "chunksRead"));  // ended before we came
    } else if (current > 0) {
      unlisten = onSnapshot(query(collection(ref, CHUNKS), where(C.ATTEMPT, "==", current), orderBy(C.SEQ)), (snap) => {
        for (const change of snap.docChanges()) if (change.type === "added") add(change.doc.data(), "chunksRead");
        changed();
      }, fail);
    }
  }

  // Pages and chunks share their field names (attempt, start, end, text, reasoning).
  async function readAll(source, counter) {
    const snap = await getDocs(query(collection(ref, source), where(C.ATTEMPT, "==", attempt), orderBy(C.END)));
    for (const d of snap.docs) add(d.data(), counter);
  }

  function add(piece, counter) {
    counts[counter] += 1;
    if (piece[C.ATTEMPT] !== attempt || piece[C.START] !== length) return;  // not the next piece of this attempt
    pieces.push(piece[C.TEXT]);
    thoughts.push(piece[C.REASONING] ?? "");
    length = piece[C.END];
  }

  return {
    follow,
    current: () => ({ attempt: attempt ?? 0, text: pieces.join(""), reasoning: thoughts.join("") }),
    // Ended, and every character of it here (an ending without a length: nothing more comes).
    complete: (d) => d[F.OUTPUT_LENGTH] == null || length >= d[F.OUTPUT_LENGTH],
    stop: () => unlisten(),
    get chunksRead() { return counts.chunksRead; },
    get pagesRead() { return counts.pagesRead; },
  };
}

function toState(d, { attempt, text, reasoning }, restarted) {
  const date = (field) => d[field]?.toDate?.() ?? null;
  const status = d[F.STATUS];
  return {
    status,
    live: LIVE.includes(status),
    text,
    reasoning,
    reasoningTruncated: d[F.REASONING_TRUNCATED] === true,
    attempt,
    seq: d[F.SEQ] ?? 0,
    restarted,
    usage: d[F.USAGE] ?? null,
    cost: d[F.COST] ?? null,
    costSource: d[F.COST_SOURCE] ?? null,
    error: d[F.ERROR] ?? null,
    model: d[F.MODEL] ?? null,
    requestedModel: d[F.REQUESTED_MODEL] ?? null,
    finishReason: d[F.FINISH_REASON] ?? null,
    cancelRequested: d[F.CANCEL_REQUESTED] === true,
    createdAt: date(F.CREATED_AT),
    startedAt: date(F.STARTED_AT),
    firstTokenAt: date(F.FIRST_TOKEN_AT),
    finishedAt: date(F.FINISHED_AT),
  };
}

// A promise with its resolve/reject in hand; settling twice does nothing.
function settle() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  promise.catch(() => {});  // a caller that never awaits `done` gets no unhandled rejection
  return { promise, resolve, reject };
}
