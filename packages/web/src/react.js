// React hooks over watchExecution and watchBatch: the current state, re-rendered as it
// changes; undefined until the first snapshot; unsubscribed on unmount or when the id changes.
//
//   import { useExecution } from "@promptq/web/react";
//   const execution = useExecution(db, executionId);   // ExecutionState | undefined

import { useEffect, useRef, useState } from "react";
import { watchBatch } from "./batch.js";
import { watchExecution } from "./watch.js";

/** @import { Firestore } from "firebase/firestore" */
/** @import { BatchState } from "./batch.js" */
/** @import { ExecutionState } from "./watch.js" */

/**
 * @typedef {object} HookOptions
 * @property {(err: Error & {code?: string}) => void} [onError]  the listener failed ("not-found", "permission-denied", …)
 */

/**
 * The state of execution `executionId`, live: its status, text so far, usage and cost; a JSON
 * answer's value so far (`partial`, `partialComplete`) and, once it succeeded, `json`.
 * @param {Firestore} db  signed in as the execution's owner
 * @param {string | null | undefined} executionId  none: undefined
 * @param {HookOptions} [options]
 * @returns {ExecutionState | undefined}
 */
export function useExecution(db, executionId, options) {
  return useWatched(watchExecution, db, executionId, options);
}

/**
 * The state of batch `batchId`, live: its status, counts and totals.
 * @param {Firestore} db  signed in as the batch's owner
 * @param {string | null | undefined} batchId  none: undefined
 * @param {HookOptions} [options]
 * @returns {BatchState | undefined}
 */
export function useBatch(db, batchId, options) {
  return useWatched(watchBatch, db, batchId, options);
}

/**
 * @template S
 * @param {(db: Firestore, id: string, callbacks: {onUpdate: (state: S) => void, onError: (err: Error) => void}) => {unsubscribe: () => void}} watch
 * @param {Firestore} db
 * @param {string | null | undefined} id
 * @param {HookOptions} [options]
 * @returns {S | undefined}
 */
function useWatched(watch, db, id, options) {
  /** @type {[{id: string, state: S} | undefined, (seen: {id: string, state: S}) => void]} */
  const [seen, setSeen] = useState();
  const onError = useRef(options?.onError);
  useEffect(() => { onError.current = options?.onError; });
  useEffect(() => {
    if (!id) return undefined;
    const handle = watch(db, id, {
      onUpdate: (state) => setSeen({ id, state }),
      onError: (err) => onError.current?.(err),
    });
    return () => handle.unsubscribe();
  }, [watch, db, id]);
  // What was seen of another id (the one before a change) is not this one's state.
  return seen && seen.id === id ? seen.state : undefined;
}
