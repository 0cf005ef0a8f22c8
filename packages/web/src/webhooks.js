// @promptq/web/webhooks: check, on your server, that a webhook delivery is promptq's.
//
//   import { verifyWebhook, WebhookVerificationError } from "@promptq/web/webhooks";
//   app.post("/promptq", express.raw({ type: "application/json" }), async (req, res) => {
//     let event;
//     try { event = await verifyWebhook(process.env.PROMPTQ_WEBHOOK_SECRET, req.headers, req.body); }
//     catch (err) { return res.sendStatus(err instanceof WebhookVerificationError ? 400 : 500); }
//     res.sendStatus(204);                      // answer fast, work after; dedupe on webhook-id
//   });
//
// Server side only (the secret must never reach a browser): Node 20+, Deno, Bun, Cloudflare
// Workers — it needs only Web Crypto (`globalThis.crypto.subtle`, whose HMAC verify compares in
// constant time), no firebase, nothing of the browser entry. Deliveries follow Standard Webhooks
// (https://www.standardwebhooks.com): HMAC-SHA256 over `${webhook-id}.${webhook-timestamp}.${body}`,
// keyed with the base64 after `whsec_`; any of its libraries verifies them too.

/**
 * What a delivery says happened (promptq.contract.webhooks.EventType; a test holds them together).
 * @typedef {"execution.succeeded" | "execution.failed" | "execution.cancelled" | "batch.completed" | "batch.cancelled" | "batch.failed"} WebhookEventType
 */

/**
 * A delivery's body: the event (`timestamp`: when it happened, ISO 8601 UTC) and its thin data
 * (`executionId`, `batchId`, `customId`, `status`, `errorCode`, `counts`: read the rest).
 * @typedef {{type: WebhookEventType, timestamp: string, data: Record<string, unknown>}} WebhookEvent
 */

/**
 * The request's headers, in any case: Node's `req.headers`, a Fetch `Headers`, a `Map`, pairs,
 * or anything with `get(name)`.
 * @typedef {Record<string, string | string[] | undefined> | Iterable<readonly [string, string]> | {get(name: string): string | null | undefined}} WebhookHeaders
 */

/**
 * @typedef {object} VerifyOptions
 * @property {number} [toleranceSeconds] how far the delivery's time may be from now (default 300: the spec's 5 minutes)
 * @property {number | Date} [now] the time to check against (Unix seconds or a Date; default: the clock)
 */

/** The event types, by name. */
export const WebhookEventType = Object.freeze({
  EXECUTION_SUCCEEDED: "execution.succeeded",
  EXECUTION_FAILED: "execution.failed",
  EXECUTION_CANCELLED: "execution.cancelled",
  BATCH_COMPLETED: "batch.completed",
  BATCH_CANCELLED: "batch.cancelled",
  BATCH_FAILED: "batch.failed",
});

/** The headers of every delivery. */
export const WebhookHeader = Object.freeze({ ID: "webhook-id", TIMESTAMP: "webhook-timestamp", SIGNATURE: "webhook-signature" });

const SECRET_PREFIX = "whsec_";
const TIMESTAMP = /^[0-9]{1,12}$/;

/** The delivery is not promptq's, or not now: answer it 4xx and never act on it. */
export class WebhookVerificationError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "WebhookVerificationError";
  }
}

/**
 * The delivery's event, once its signature and time check. `body` is the raw body exactly as
 * received (`express.raw()`, `await request.text()`): JSON parsed and serialized again is not
 * what was signed. Rejects with `WebhookVerificationError` (a header missing, no signature that
 * matches, a time outside the tolerance); with a `TypeError` when `secret` is not a `whsec_`
 * secret (a configuration error: answer 5xx and the sender retries once it is mended).
 * @param {string | string[]} secret the endpoint's secret (or several: any may match)
 * @param {WebhookHeaders} headers
 * @param {string | Uint8Array | ArrayBuffer} body
 * @param {VerifyOptions} [options]
 * @returns {Promise<WebhookEvent>}
 */
export async function verifyWebhook(secret, headers, body, options = {}) {
  const keys = (Array.isArray(secret) ? secret : [secret]).map(secretKey);
  if (keys.length === 0) throw new TypeError("no webhook secret given");
  const raw = typeof body === "string" ? new TextEncoder().encode(body) : new Uint8Array(body);
  const { id, timestamp, signatures } = readHeaders(headers);
  if (!TIMESTAMP.test(timestamp)) throw new WebhookVerificationError(`${WebhookHeader.TIMESTAMP} is not Unix seconds`);
  const now = options.now instanceof Date ? options.now.getTime() / 1000 : options.now ?? Date.now() / 1000;
  const skew = now - Number(timestamp);
  if (Math.abs(skew) > (options.toleranceSeconds ?? 300)) {
    throw new WebhookVerificationError(`${WebhookHeader.TIMESTAMP} is ${Math.round(Math.abs(skew))} s ${skew > 0 ? "old" : "in the future"}`);
  }
  const signed = concat(new TextEncoder().encode(`${id}.${timestamp}.`), raw);
  if (!(await anyMatches(keys, signatures, signed))) throw new WebhookVerificationError("no signature matches");
  let event;
  try {
    event = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    throw new WebhookVerificationError("the body is not JSON");
  }
  if (event === null || typeof event !== "object" || Array.isArray(event)) throw new WebhookVerificationError("the body is not a JSON object");
  return /** @type {WebhookEvent} */ (event);
}

/**
 * Whether any v1 signature is the HMAC of `signed` under any key (Web Crypto's verify).
 * @param {Uint8Array<ArrayBuffer>[]} keys
 * @param {Uint8Array<ArrayBuffer>[]} signatures
 * @param {Uint8Array<ArrayBuffer>} signed
 */
async function anyMatches(keys, signatures, signed) {
  const subtle = globalThis.crypto?.subtle;
  if (!subtle) throw new TypeError("verifyWebhook needs Web Crypto (globalThis.crypto.subtle): Node 20+, Deno, Bun, Workers");
  for (const bytes of keys) {
    const key = await subtle.importKey("raw", bytes, { name: "HMAC", hash: "SHA-256" }, false, ["verify"]);
    for (const signature of signatures) {
      if (await subtle.verify("HMAC", key, signature, signed)) return true;
    }
  }
  return false;
}

/**
 * The HMAC key a `whsec_` secret spells.
 * @param {string} secret
 */
function secretKey(secret) {
  if (typeof secret !== "string") throw new TypeError("a webhook secret is a string: whsec_ followed by base64");
  const text = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret;
  const key = /^[A-Za-z0-9+/]*={0,2}$/.test(text) ? fromBase64(text) : null;
  if (!key || key.length === 0) throw new TypeError("a webhook secret is whsec_ followed by base64");
  return key;
}

/**
 * The id, timestamp and v1 signatures, from headers of any case. An id or a timestamp given
 * twice, differently, is refused (which one was signed?).
 * @param {WebhookHeaders} headers
 */
function readHeaders(headers) {
  /** @type {Map<string, string[]>} */
  const found = new Map();
  for (const [name, value] of headerPairs(headers)) {
    const key = String(name).toLowerCase();
    const values = (Array.isArray(value) ? value : [value]).filter((v) => v != null).map((v) => String(v).trim());
    found.set(key, [...(found.get(key) ?? []), ...values]);
  }
  const id = single(found, WebhookHeader.ID);
  const timestamp = single(found, WebhookHeader.TIMESTAMP);
  const given = (found.get(WebhookHeader.SIGNATURE) ?? []).join(" ").trim();
  if (!given) throw new WebhookVerificationError(`no ${WebhookHeader.SIGNATURE} header`);
  return { id, timestamp, signatures: given.split(/\s+/).flatMap(v1Signature) };
}

/**
 * @param {WebhookHeaders} headers
 * @returns {Iterable<readonly [unknown, unknown]>}
 */
function headerPairs(headers) {
  if (headers == null) throw new WebhookVerificationError("no headers");
  if (typeof (/** @type {any} */ (headers)[Symbol.iterator]) === "function") return /** @type {Iterable<readonly [string, string]>} */ (headers);
  const get = /** @type {{get?: unknown}} */ (headers).get;
  if (typeof get === "function") {
    return Object.values(WebhookHeader).map((name) => /** @type {const} */ ([name, get.call(headers, name)]));
  }
  return Object.entries(headers);
}

/**
 * @param {Map<string, string[]>} found
 * @param {string} name
 */
function single(found, name) {
  const values = new Set(found.get(name) ?? []);
  if (values.size > 1) throw new WebhookVerificationError(`${name} is given twice`);
  const [value] = values;
  if (!value) throw new WebhookVerificationError(`no ${name} header`);
  return value;
}

/**
 * A `v1,<base64>` signature's bytes (none for other versions or bad base64). A trailing comma is
 * dropped: a proxy that joined two headers wrote one.
 * @param {string} item
 * @returns {Uint8Array<ArrayBuffer>[]}
 */
function v1Signature(item) {
  const trimmed = item.replace(/,$/, "");
  const comma = trimmed.indexOf(",");
  const [version, encoded] = comma < 0 ? [trimmed, ""] : [trimmed.slice(0, comma), trimmed.slice(comma + 1)];
  if (version !== "v1" || !encoded || !/^[A-Za-z0-9+/]+={0,2}$/.test(encoded)) return [];
  const bytes = fromBase64(encoded);
  return bytes ? [bytes] : [];
}

/**
 * @param {string} text base64, padding optional
 * @returns {Uint8Array<ArrayBuffer> | null}
 */
function fromBase64(text) {
  try {
    return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
  } catch {
    return null;
  }
}

/**
 * @param {Uint8Array} a
 * @param {Uint8Array} b
 */
function concat(a, b) {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
