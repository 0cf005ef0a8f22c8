// The callables of one's signed webhooks' endpoints, typed: add one (its secret answered once),
// list them (never a secret), delete one, rotate its secret. Verifying a delivery, on a server:
// "@promptq/web/webhooks".

import { httpsCallable } from "firebase/functions";
import { Callable } from "./schema.js";

/** @import { Functions } from "firebase/functions" */

/**
 * @param {Functions} functions
 * @param {string} name
 * @param {object} data
 * @returns {Promise<any>}
 */
async function call(functions, name, data) {
  return (await httpsCallable(functions, name)(data)).data;
}

/**
 * @typedef {"execution.succeeded" | "execution.failed" | "execution.cancelled" | "batch.completed" | "batch.cancelled" | "batch.failed"} WebhookEventType
 */

/**
 * `create_webhook_endpoint`: an https URL; the events sent there (default all); `batchItems`:
 * the execution events of batch items too.
 * @typedef {object} WebhookEndpointRequest
 * @property {string} url
 * @property {WebhookEventType[]} [events]
 * @property {boolean} [batchItems]
 */

/**
 * One endpoint as `list_webhook_endpoints` shows it: never its secret.
 * @typedef {object} WebhookEndpoint
 * @property {string} endpointId
 * @property {string} url
 * @property {WebhookEventType[]} events
 * @property {boolean} batchItems
 * @property {string | null} secretHint  the secret's last 4 characters
 * @property {"gone" | "failing" | "failures" | null} disabled  why deliveries stopped (delete it and add it again)
 * @property {string | null} disabledAt
 * @property {number} failures  attempts failed in a row
 * @property {string | null} failingSince
 * @property {number | null} lastStatus
 * @property {string | null} createdAt
 */

/**
 * @typedef {object} WebhookEndpointCreated
 * @property {string} endpointId
 * @property {string} secret  `whsec_…`: shown this once (stored encrypted, never shown again)
 * @property {WebhookEndpoint} endpoint
 */

/**
 * @typedef {object} WebhookEndpointList
 * @property {WebhookEndpoint[]} endpoints
 * @property {number} max  how many endpoints a user may have
 */

/**
 * @typedef {object} WebhookSecretRotated
 * @property {string} endpointId
 * @property {string} secret  the new secret, shown this once
 * @property {string} previousUntil  the old secret signs beside it until then
 */

/**
 * Add a signed webhook endpoint (`create_webhook_endpoint`); keep the answer's `secret`.
 * @param {Functions} functions
 * @param {WebhookEndpointRequest} request
 * @returns {Promise<WebhookEndpointCreated>}
 */
export function createWebhookEndpoint(functions, request) {
  return call(functions, Callable.CREATE_WEBHOOK_ENDPOINT, request);
}

/**
 * The caller's webhook endpoints (`list_webhook_endpoints`).
 * @param {Functions} functions
 * @returns {Promise<WebhookEndpointList>}
 */
export function listWebhookEndpoints(functions) {
  return call(functions, Callable.LIST_WEBHOOK_ENDPOINTS, {});
}

/**
 * Delete one of the caller's webhook endpoints (`delete_webhook_endpoint`).
 * @param {Functions} functions
 * @param {string} endpointId
 * @returns {Promise<{endpointId: string, deleted: boolean}>}
 */
export function deleteWebhookEndpoint(functions, endpointId) {
  return call(functions, Callable.DELETE_WEBHOOK_ENDPOINT, { endpointId });
}

/**
 * A new secret for an endpoint (`rotate_webhook_secret`); the old one signs beside it for 24 hours.
 * @param {Functions} functions
 * @param {string} endpointId
 * @returns {Promise<WebhookSecretRotated>}
 */
export function rotateWebhookSecret(functions, endpointId) {
  return call(functions, Callable.ROTATE_WEBHOOK_SECRET, { endpointId });
}
