// watchExecution: follow one promptq execution (`executions/{id}`) from a browser app.
//
//   import { watchExecution } from "./watch.js";
//   const handle = watchExecution(db, id, { onUpdate: (s) => render(s.text), onError: console.error });
//   const final = await handle.done;   // status terminal, whole text assembled
//
// It imports the Firestore SDK by its bare name, "firebase/firestore": bundlers (Vite,
// webpack) resolve it from node_modules; a page without a bundler maps it with an import map.
// The document's field names come from ./schema.js (generated from promptq/schema.py).

import { doc, getDoc, onSnapshot, updateDoc } from "firebase/firestore";
import { EXECUTIONS, F, LIVE, P, PAGES, Req } from "./schema.js";

/**
 * What `onUpdate` receives, and what `done` resolves with.
 * @typedef {object} ExecutionState
 * @property {string} status            queued | running | succeeded | failed | cancelled
 * @property {boolean} live             true while queued or running
 * @property {string} text              the whole answer so far (sealed pages + `output`)
 * @property {string} reasoning         reasoning text of thinking models ("" when none)
 * @property {boolean} reasoningTruncated  the reasoning outgrew its cap and was cut
 * @property {number} attempt           the attempt whose text `text` is
 * @property {number} seq               the document's write counter for this version
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
 * @property {number} pagesRead           page documents read so far (each page is read once)
 */

/**
 * Watch `executions/{executionId}`. Versions may be skipped (Firestore listeners deliver
 * the latest); an older version than the one reported (lower `seq`) is never reported.
 * @param {import("firebase/firestore").Firestore} db
 * @param {string} executionId
 * @param {{onUpdate?: (state: ExecutionState) => void, onError?: (err: Error) => void}} [callbacks]
 * @returns {ExecutionHandle}
 */
export function watchExecution(db, executionId, { onUpdate = () => {}, onError = () => {} } = {}) {
  const ref = doc(db, EXECUTIONS, executionId);
  const text = textAssembler(db, ref);
  const done = settle();
  let listening = true;

  function report(state) {
    if (!listening) return;
    onUpdate(state);
    if (!state.live) done.resolve(state);
  }

  function fail(err) {
    if (!listening) return;  // after unsubscribe(): nobody listens any more
    unsubscribe();
    onError(err);
    done.reject(err);
  }

  const unlisten = onSnapshot(ref, oneAtATime(versions(executionId, text, report), fail), fail);

  function unsubscribe() {
    listening = false;
    unlisten();
  }

  return {
    stop: () => updateDoc(ref, { [F.CANCEL_REQUESTED]: true }),
    unsubscribe,
    done: done.promise,
    get pagesRead() { return text.pagesRead; },
  };
}

// Snapshot -> state: drops versions older than the one reported, assembles the text, and
// notes when a new attempt replaced text already reported.
function versions(executionId, text, report) {
  let last = null;  // the state last reported
  return async (snap) => {
    if (!snap.exists()) throw Object.assign(new Error(`no execution ${executionId}`), { code: "not-found" });
    const d = snap.data();
    if (last && (d[F.SEQ] ?? 0) < last.seq) return;
    const assembled = await text.assemble(d);
    if (assembled === null) return;  // its pages were replaced meanwhile: a newer version follows
    const restarted = !!last && (last.attempt === assembled.attempt ? last.restarted : last.text !== "");
    last = toState(d, assembled, restarted);
    report(last);
  };
}

// Runs the asynchronous `handle` on one snapshot at a time; while it works, only the newest
// snapshot that arrives waits (listeners may skip versions anyway).
function oneAtATime(handle, fail) {
  let pending = null;
  let busy = false;
  async function pump() {
    busy = true;
    try {
      while (pending) {
        const snap = pending;
        pending = null;
        await handle(snap);
      }
    } catch (err) {
      fail(err);
    } finally {
      busy = false;
    }
  }
  return (snap) => {
    pending = snap;
    if (!busy) pump();
  };
}

// The document's text layout, and nothing else: the answer is the sealed pages
// `pages/{000000..}` (code points 0..outputOffset) followed by `output`. Pages never change
// within an attempt, so each is read once; a new attempt starts over.
function textAssembler(db, ref) {
  let attempt = null;
  let pages = [];  // texts of the pages read for `attempt`, in order
  let end = 0;  // code point where the pages read so far end
  let reads = 0;

  async function assemble(d) {
    const current = d[F.ATTEMPT] ?? 0;
    const count = d[F.OUTPUT_PAGES] ?? 0;
    if (current !== attempt || count < pages.length) {
      attempt = current;
      pages = [];
      end = 0;
    }
    while (pages.length < count) {
      const id = String(pages.length).padStart(6, "0");
      reads += 1;
      const page = (await getDoc(doc(ref, PAGES, id))).data();
      if (!page || page[P.ATTEMPT] !== attempt || page[P.START] !== end) return null;
      pages.push(page[P.TEXT]);
      end = page[P.END];
    }
    return { attempt, text: pages.join("") + (d[F.OUTPUT] ?? "") };
  }

  return { assemble, get pagesRead() { return reads; } };
}

function toState(d, { attempt, text }, restarted) {
  const date = (field) => d[field]?.toDate?.() ?? null;
  const status = d[F.STATUS];
  return {
    status,
    live: LIVE.includes(status),
    text,
    reasoning: d[F.REASONING] ?? "",
    reasoningTruncated: d[F.REASONING_TRUNCATED] === true,
    attempt,
    seq: d[F.SEQ] ?? 0,
    restarted,
    usage: d[F.USAGE] ?? null,
    cost: d[F.COST] ?? null,
    costSource: d[F.COST_SOURCE] ?? null,
    error: d[F.ERROR] ?? null,
    model: d[F.MODEL] ?? null,
    requestedModel: d[F.REQUEST]?.[Req.MODEL] ?? null,
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
