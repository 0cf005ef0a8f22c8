// One attempt's text, reasoning and JSON so far, put together from its pieces (chunks or
// pages) in order: what watchExecution reports of the attempt it follows.

import { partialJson } from "./partial.js";
import { ChunkField } from "./schema.js";

/** @import { DocumentData } from "firebase/firestore" */

/**
 * @typedef {object} Assembled
 * @property {number} attempt
 * @property {string} text
 * @property {string} reasoning
 * @property {ReturnType<typeof partialJson>} partial  a JSON answer's value so far, parsed as the text grows
 */

/**
 * One attempt's text and reasoning, from its pieces in order: a piece that is not the next one
 * of this attempt is left out.
 * @param {number | null} attempt  null: none yet
 */
export function assembly(attempt) {
  /** @type {string[]} */
  const pieces = [];
  /** @type {string[]} */
  const thoughts = [];  // reasoning, beside the text
  let length = 0;  // code points received
  const partial = partialJson();
  return {
    attempt,
    get length() { return length; },
    /** @param {DocumentData} piece */
    add(piece) {
      if (piece[ChunkField.ATTEMPT] !== attempt || piece[ChunkField.START] !== length) return;
      pieces.push(piece[ChunkField.TEXT]);
      thoughts.push(piece[ChunkField.REASONING] ?? "");
      length = piece[ChunkField.END];
    },
    /** @returns {Assembled} */
    current: () => ({ attempt: attempt ?? 0, text: pieces.join(""), reasoning: thoughts.join(""), partial }),
  };
}

/**
 * A whole answer's parsed value, or undefined while its text is incomplete.
 * @param {string} text
 * @returns {unknown}
 */
export function parsed(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
