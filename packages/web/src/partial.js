// A JSON answer while it streams (`outputFormat: "json"`): `partial`, the value its text so far
// parses to (partial-json: an unfinished string shows what came of it, an unfinished number its
// digits so far, unclosed arrays and objects what they hold; a member whose value has not begun
// is left out; undefined while the text is not the start of one JSON value), and
// `partialComplete`, the top-level keys (or array indices) whose values are whole: a `,` or the
// closing bracket came after them (a scanner reading each character once).
//
// Parsing costs linear time in the text, which grows a chunk at a time: the text is parsed again
// only when it grew by an eighth of what was parsed last (any growth below 4 Ki characters), so
// an answer's parses add up to about 9 times its length, not its length squared; and not past
// 256 Ki characters: after that `partial` stays the value of the first 256 Ki until `json`.
// A text nested deeper than 200 levels has no `partial` (as in Python, where jiter stops there).
// The Python twin: promptq_client/partial.py.

import { Allow, parse } from "partial-json";

export const PARTIAL_EAGER_CHARS = 4096;  // below this, every change is parsed
export const PARTIAL_GROWTH = 8;  // above it, again once the text grew by 1/8 of what was parsed
export const PARTIAL_CAP_CHARS = 256 * 1024;  // not past this
export const PARTIAL_MAX_DEPTH = 200;  // deeper nesting has no partial

// What may be unfinished: strings, numbers, arrays, objects (not `tr` for true: as jiter does).
const ALLOW = Allow.STR | Allow.NUM | Allow.ARR | Allow.OBJ;

/**
 * The value `text` (the start of a JSON text) parses to so far, or undefined (not JSON).
 * @param {string} text
 * @param {boolean} [inString]  the text ends inside a string, not after a backslash (members() says)
 * @returns {unknown}
 */
export function parsePartial(text, inString = false) {
  // partial-json trims the text first, which would drop an unfinished string's trailing spaces:
  // such a string is closed here as it stands.
  const whole = inString && /\s$/.test(text) ? text + '"' : text;
  try {
    return text.trim() ? parse(whole, ALLOW) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * `partialComplete` of a whole value: every key, or every index.
 * @param {unknown} value
 * @returns {Array<string | number>}
 */
export function wholeMembers(value) {
  if (Array.isArray(value)) return value.map((_, i) => i);
  return value !== null && typeof value === "object" ? Object.keys(value) : [];
}

/**
 * Which top-level members of a JSON text are whole, reading each character once as the text
 * grows: `feed(text, end)` reads `text.slice(pos, end)`.
 */
export function members() {
  /** @type {Scan} */
  const scan = { pos: 0, depth: 0, deepest: 0, inString: false, escaped: false, top: null, keyStart: -1, expectKey: false, key: null, itemSeen: false, done: [] };
  return {
    /** @param {string} text @param {number} end */
    feed(text, end) {
      for (; scan.pos < end; scan.pos++) step(scan, text, scan.pos);
      return scan.done;
    },
    /** The text read so far ends inside a string, not after a backslash. */
    get inString() { return scan.inString && !scan.escaped; },
    /** The deepest nesting read so far. */
    get deepest() { return scan.deepest; },
  };
}

/**
 * @typedef {object} Scan
 * @property {number} pos  characters read
 * @property {number} depth
 * @property {number} deepest
 * @property {boolean} inString
 * @property {boolean} escaped
 * @property {string | null} top  "{" or "[" once the top level opened, "" for a scalar
 * @property {number} keyStart  where the top-level key being read starts (-1: none)
 * @property {boolean} expectKey  at depth 1 of an object, the next string is a key
 * @property {string | null} key  the current member's key, once read
 * @property {boolean} itemSeen  at depth 1 of an array, the current item has begun
 * @property {Array<string | number>} done  the members that are whole
 */

/** @param {Scan} scan @param {string} text @param {number} i */
function step(scan, text, i) {
  const c = text[i];
  if (scan.inString) {
    if (scan.escaped) scan.escaped = false;
    else if (c === "\\") scan.escaped = true;
    else if (c === '"') {
      scan.inString = false;
      if (scan.keyStart >= 0) scan.key = keyOf(text.slice(scan.keyStart, i + 1));
      scan.keyStart = -1;
    }
    return;
  }
  if (" \t\r\n".includes(c)) return;
  if (scan.top === null) scan.top = c === "{" || c === "[" ? c : "";
  if (scan.depth === 1 && scan.top === "[" && c !== "," && c !== "]") scan.itemSeen = true;
  if (c === '"') {
    scan.inString = true;
    if (scan.depth === 1 && scan.top === "{" && scan.expectKey) [scan.keyStart, scan.expectKey] = [i, false];
  } else if (c === "{" || c === "[") {
    scan.depth += 1;
    scan.deepest = Math.max(scan.deepest, scan.depth);
    scan.expectKey = scan.depth === 1 && c === "{";
  } else if (c === "}" || c === "]") {
    scan.depth -= 1;
    if (scan.depth === 0) ended(scan);
  } else if (c === "," && scan.depth === 1) {
    ended(scan);
    scan.expectKey = scan.top === "{";
  }
}

/** @param {Scan} scan  a top-level member ended (a `,`, or the closing bracket) */
function ended(scan) {
  if (scan.top === "{" && scan.key !== null) {
    if (!scan.done.includes(scan.key)) scan.done.push(scan.key);
    scan.key = null;
  } else if (scan.top === "[" && scan.itemSeen) {
    scan.done.push(scan.done.length);
    scan.itemSeen = false;
  }
}

/** @param {string} quoted */
function keyOf(quoted) {
  try {
    const key = JSON.parse(quoted);
    return typeof key === "string" ? key : null;
  } catch {
    return null;
  }
}

/**
 * @typedef {object} PartialJson
 * @property {unknown} partial                    the value so far (undefined: not JSON yet)
 * @property {Array<string | number>} partialComplete  its top-level keys (or indices) that are whole
 */

/**
 * One attempt's `partial` and `partialComplete`, parsed as its text grows.
 */
export function partialJson() {
  let parsed = 0;  // characters of the text parsed last
  /** @type {PartialJson} */
  let current = { partial: undefined, partialComplete: [] };
  const scanner = members();
  return {
    /**
     * The text so far; `final`: no more comes, so parse what is new whatever its size (to the cap).
     * @param {string} text @param {boolean} [final]
     * @returns {PartialJson}
     */
    update(text, final = false) {
      const end = Math.min(text.length, PARTIAL_CAP_CHARS);
      const grown = end - parsed;
      if (grown > 0 && (final || end <= PARTIAL_EAGER_CHARS || end === PARTIAL_CAP_CHARS || grown * PARTIAL_GROWTH >= parsed)) {
        const done = scanner.feed(text, end);
        const deep = scanner.deepest > PARTIAL_MAX_DEPTH;
        const partial = deep ? undefined : parsePartial(end < text.length ? text.slice(0, end) : text, scanner.inString);
        current = { partial, partialComplete: partial === undefined ? [] : [...done] };
        parsed = end;
      }
      return current;
    },
    /**
     * The answer succeeded and was validated: `partial` is its value, every member whole.
     * @param {unknown} value
     * @returns {PartialJson}
     */
    settle(value) {
      current = { partial: value, partialComplete: wholeMembers(value) };
      return current;
    },
  };
}
