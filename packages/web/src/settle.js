// A promise with its resolve and reject in hand (a watcher's `done`).

/**
 * @template T
 * @typedef {object} Settled
 * @property {Promise<T>} promise
 * @property {(value: T) => void} resolve  settling twice does nothing
 * @property {(err: unknown) => void} reject
 */

/**
 * A promise to settle later; a caller that never awaits it gets no unhandled rejection.
 * @template T
 * @returns {Settled<T>}
 */
export function settle() {
  /** @type {(value: T) => void} */
  let resolve = () => {};
  /** @type {(err: unknown) => void} */
  let reject = () => {};
  /** @type {Promise<T>} */
  const promise = new Promise((res, rej) => { resolve = res; reject = rej; });
  promise.catch(() => {});
  return { promise, resolve, reject };
}
