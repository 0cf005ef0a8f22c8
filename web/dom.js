// Small DOM helpers shared by the demo page's modules.

/**
 * The element with this id.
 * @param {string} id
 * @returns {HTMLElement}
 */
export const $ = (id) => document.getElementById(id);

/**
 * Show `text` in `el`, or hide `el` when the text is empty.
 * @param {HTMLElement} el
 * @param {string} text
 */
export function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

/**
 * Set the text only when it changes: a live region re-announces every write, even of the same text.
 * @param {HTMLElement} el
 * @param {string} text
 */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/**
 * Show an error in `el`.
 * @param {HTMLElement} el
 * @param {unknown} err
 * @param {string} [prefix]
 */
export function fail(el, err, prefix = "") {
  show(el, prefix + describe(err));
}

/**
 * "functions/invalid-argument" -> "INVALID_ARGUMENT: <message>"; Auth and Firestore codes as given.
 * @param {any} err
 * @returns {string}
 */
export function describe(err) {
  const code = String(err?.code ?? "error");
  if (code.startsWith("functions/")) {
    return `${code.slice(10).replaceAll("-", "_").toUpperCase()}: ${err.message}`;
  }
  return `${code}: ${err?.message ?? err}`;
}
