// The callables a frontend uses, typed: start an execution or a batch, list one's executions,
// read one's usage, cancel (signed webhooks' endpoints: endpoints.js). Each answers its data (a refusal rejects with the SDK's
// FunctionsError: `code` "functions/invalid-argument", …, `details` {reason, field}).

import { httpsCallable } from "firebase/functions";
import { Callable } from "./schema.js";

/** @import { Functions } from "firebase/functions" */
/** @import { BatchStatus, CallStatus, Reason } from "./schema.js" */
/** @import { BatchLaneName, UpstreamProgress } from "./batch.js" */
/** @import { ExecutionStatus } from "./watch.js" */
/** @import { Message, Params } from "./request.js" */

// --- requests ---------------------------------------------------------------------------


/**
 * Exactly one source: the prompt text, the messages, or a stored template with its variables.
 * @typedef {{prompt: string, messages?: never, promptId?: never, variables?: never}
 *   | {messages: Message[], prompt?: never, promptId?: never, variables?: never}
 *   | {promptId: string, variables?: Record<string, string | number>, prompt?: never, messages?: never}} PromptSource
 */

/**
 * A model, or an ordered fallback list of models, or neither (the server's default).
 * @typedef {{model?: string, models?: never} | {models: string[], model?: never}} ModelChoice
 */

/**
 * `start_execution`'s request.
 * @typedef {PromptSource & ModelChoice & {params?: Params, idempotencyKey?: string}} StartRequest
 */

/**
 * One item of a batch: a start request with an id of the caller's, unique in the batch.
 * @typedef {StartRequest & {customId: string}} BatchItemRequest
 */

/**
 * `start_batch`'s request: the items, what each gets unless it says otherwise, and the lane they
 * run on ("stream" by default; "discounted": OpenRouter's Batch API, where `maxConcurrency` is ignored).
 * @typedef {ModelChoice & {items: BatchItemRequest[], params?: Params, maxConcurrency?: number, lane?: BatchLaneName,
 *   idempotencyKey?: string}} BatchRequest
 */

/**
 * @typedef {object} ListRequest
 * @property {number} [limit]      1 to 100 (20)
 * @property {string} [pageToken]  the previous answer's `nextPageToken`
 */

/**
 * @typedef {object} UsageRequest
 * @property {number} [days]  the most recent days with usage, 1 to 90 (7)
 */

// --- answers ----------------------------------------------------------------------------

/**
 * @typedef {object} StartAnswer
 * @property {string} executionId
 * @property {boolean} deduplicated  the same idempotencyKey and request started it before
 */

/**
 * @typedef {object} BatchStarted
 * @property {string} batchId
 * @property {boolean} deduplicated
 */

/**
 * @typedef {object} ExecutionSummary
 * @property {string} executionId
 * @property {ExecutionStatus} status
 * @property {string | null} requestedModel
 * @property {string | null} model
 * @property {string | null} title
 * @property {number | null} cost
 * @property {string | null} createdAt  ISO 8601
 */

/**
 * @typedef {object} ListAnswer
 * @property {ExecutionSummary[]} items  newest first
 * @property {string | null} nextPageToken
 */

/**
 * One UTC day of usage.
 * @typedef {object} UsageDay
 * @property {string} day  YYYY-MM-DD
 * @property {number} executions
 * @property {number} promptTokens
 * @property {number} completionTokens
 * @property {number} cost  USD, on the app's key
 * @property {number} userKeyExecutions
 * @property {number} userKeyPromptTokens
 * @property {number} userKeyCompletionTokens
 * @property {number} userKeyCost
 * @property {number} estimatedCost  the part of `cost` charged at its worst case
 * @property {number} cachedTokens   prompt tokens read from a prompt cache, on the app's key
 * @property {number} cacheDiscount  USD prompt caching saved, on the app's key
 */

/**
 * @typedef {object} UsageLimits
 * @property {number} maxActive        0: no limit
 * @property {number} startsPerMinute  0: no limit
 * @property {number} dailyBudgetUsd   0: no budget
 * @property {number} maxBatchLanes    batch lanes in flight across the user's batches (0: no cap)
 * @property {number} active           executions and batches holding a place now
 * @property {number} batchLanes       lanes of the user's batches in flight now
 * @property {number} reservedUsd      reserved against today's budget now
 */

/**
 * @typedef {object} UsageAnswer
 * @property {UsageDay} today
 * @property {UsageDay[]} days  newest first
 * @property {UsageLimits} limits
 * @property {boolean} hasKey  the caller's own OpenRouter key serves their executions
 */

/**
 * @typedef {object} CancelAnswer
 * @property {string} executionId
 * @property {ExecutionStatus | null} status
 * @property {boolean} changed
 * @property {string} message
 */

/**
 * A batch's status: queued | running | completed | cancelling | cancelled.
 * @typedef {(typeof BatchStatus)[keyof typeof BatchStatus]} BatchStatusName
 */

/**
 * @typedef {object} BatchCounts
 * @property {number} total
 * @property {number} queued
 * @property {number} running
 * @property {number} succeeded
 * @property {number} failed
 * @property {number} cancelled
 */

/**
 * `cancel_batch`'s, `retry_batch`'s and `resume_batch`'s answer: the batch as last folded, and what the call did.
 * @typedef {object} BatchAnswer
 * @property {string} batchId
 * @property {BatchStatusName} status
 * @property {BatchCounts} counts
 * @property {{promptTokens?: number, completionTokens?: number, cachedTokens?: number}} usage
 * @property {number} cost
 * @property {number} cacheDiscount  USD prompt caching saved over its executions
 * @property {number} maxConcurrency
 * @property {number} round
 * @property {string | null} title
 * @property {string | null} createdAt
 * @property {string | null} finishedAt
 * @property {string | null} foldedAt
 * @property {number} lanesActive     this round's lanes running now (fair share)
 * @property {number} lanesParked     lanes waiting for a fair-share cap: they start as lanes end
 * @property {string | null} waitingFor  the cap they wait for: "user_cap" | "project_cap"
 * @property {ProviderWait | null} providerWait  its items wait for the provider (a throttle, spent credit, a daily cap)
 * @property {BatchLaneName} lane    the lane its current round runs on
 * @property {UpstreamProgress | null} upstream  the discounted lane's upstream batches of the current round
 * @property {string | null} message
 */

/**
 * What a batch's items wait for: a throttled model (it runs on by itself at `until`), spent
 * credit (`status: "paused"` until `resumeBatch`), a free model's daily cap (paused until `until`).
 * @typedef {object} ProviderWait
 * @property {"throttle" | "daily_cap" | "credit"} reason
 * @property {string} model
 * @property {string | null} until  ISO time; null: until resumed
 * @property {string | null} since
 * @property {string} message
 */

// --- refusals ---------------------------------------------------------------------------

/**
 * A callable's refusal, as the SDK reports it: "functions/invalid-argument", …
 * @typedef {`functions/${(typeof CallStatus)[keyof typeof CallStatus]}`} CallErrorCode
 */

/**
 * Why a request was refused (`details.reason`): invalid, max_active, daily_budget, …
 * @typedef {(typeof Reason)[keyof typeof Reason]} RefusalReason
 */

/**
 * @typedef {object} CallErrorDetails
 * @property {RefusalReason} reason
 * @property {string} [field]  the field refused (`items.17.variables.city`)
 */

// --- the calls --------------------------------------------------------------------------

/**
 * @param {Functions} functions
 * @param {string} name
 * @param {object} data
 * @returns {Promise<any>}  the answer's data (its type is the caller's to say)
 */
async function call(functions, name, data) {
  return (await httpsCallable(functions, name)(data)).data;
}

/**
 * Start an execution (`start_execution`); follow it with `watchExecution(db, executionId)`.
 * @param {Functions} functions
 * @param {StartRequest} request
 * @returns {Promise<StartAnswer>}
 */
export function startExecution(functions, request) {
  return call(functions, Callable.START_EXECUTION, request);
}

/**
 * Start a batch (`start_batch`); follow it with `watchBatch(db, batchId)`.
 * @param {Functions} functions
 * @param {BatchRequest} request
 * @returns {Promise<BatchStarted>}
 */
export function startBatch(functions, request) {
  return call(functions, Callable.START_BATCH, request);
}

/**
 * The caller's executions, newest first (`list_executions`).
 * @param {Functions} functions
 * @param {ListRequest} [request]
 * @returns {Promise<ListAnswer>}
 */
export function listExecutions(functions, request = {}) {
  return call(functions, Callable.LIST_EXECUTIONS, request);
}

/**
 * The caller's usage today and on recent days, and their limits (`get_usage`).
 * @param {Functions} functions
 * @param {UsageRequest} [request]
 * @returns {Promise<UsageAnswer>}
 */
export function getUsage(functions, request = {}) {
  return call(functions, Callable.GET_USAGE, request);
}

/**
 * Stop an execution through the callable (`cancel_execution`); `stopExecution(db, id)` does
 * it through Firestore.
 * @param {Functions} functions
 * @param {string} executionId
 * @returns {Promise<CancelAnswer>}
 */
export function cancelExecution(functions, executionId) {
  return call(functions, Callable.CANCEL_EXECUTION, { executionId });
}

/**
 * Cancel a batch (`cancel_batch`): its waiting items end at once, its running ones stop.
 * @param {Functions} functions
 * @param {string} batchId
 * @returns {Promise<BatchAnswer>}
 */
export function cancelBatch(functions, batchId) {
  return call(functions, Callable.CANCEL_BATCH, { batchId });
}

/**
 * Run a batch's failed items again (`retry_batch`), on `lane` (default: the lane of its last round).
 * @param {Functions} functions
 * @param {string} batchId
 * @param {{lane?: BatchLaneName}} [options]
 * @returns {Promise<BatchAnswer>}
 */
export function retryBatch(functions, batchId, { lane } = {}) {
  return call(functions, Callable.RETRY_BATCH, lane ? { batchId, lane } : { batchId });
}

/**
 * Resume a paused batch (`resume_batch`): its key's credit is back (or try the provider again
 * now, before a daily cap resets); the items its pause holds run on.
 * @param {Functions} functions
 * @param {string} batchId
 * @returns {Promise<BatchAnswer>}
 */
export function resumeBatch(functions, batchId) {
  return call(functions, Callable.RESUME_BATCH, { batchId });
}
