// Generated from promptq/contract by `make web-schema` (devstack/schema_js.py): do not edit.

export const EXECUTIONS = "executions";
export const CHUNKS = "chunks";
export const PAGES = "pages";
export const USERS = "users";
export const PROMPTS = "prompts";
export const TEMPLATE_CONTENT = "content";
export const TEMPLATE_COUNT = "prompts";
export const TEMPLATE_LAST = "lastPrompt";
export const ACCOUNTS = "accounts";
export const USAGE = "usage";
export const DAYS = "days";
export const BATCHES = "batches";
export const WORKERS = "workers";
export const STOPS = "stops";
export const FINISH_CANCELLED = "cancelled";
export const Status = Object.freeze({
  "QUEUED": "queued",
  "RUNNING": "running",
  "SUCCEEDED": "succeeded",
  "FAILED": "failed",
  "CANCELLED": "cancelled"
});
export const LIVE = Object.freeze([
  "queued",
  "running"
]);
export const BatchStatus = Object.freeze({
  "QUEUED": "queued",
  "RUNNING": "running",
  "COMPLETED": "completed",
  "CANCELLING": "cancelling",
  "CANCELLED": "cancelled",
  "PAUSED": "paused"
});
export const BATCH_TERMINAL = Object.freeze([
  "cancelled",
  "completed"
]);
export const ExecutionField = Object.freeze({
  "STATUS": "status",
  "OWNER": "ownerUid",
  "SHARD": "shard",
  "REQUESTED_MODEL": "requestedModel",
  "TITLE": "title",
  "KEY_SOURCE": "keySource",
  "BATCH_ID": "batchId",
  "CUSTOM_ID": "customId",
  "INDEX": "index",
  "LATEST": "latest",
  "WAITING": "waiting",
  "AFTER": "after",
  "LANE": "lane",
  "UPSTREAM_GROUP": "upstreamGroup",
  "UPSTREAM_BATCH": "upstreamBatch",
  "PARKED": "parked",
  "PAUSED": "paused",
  "PROVIDER_WAIT": "providerWait",
  "MODEL": "model",
  "GENERATION_ID": "generationId",
  "IDEMPOTENCY_KEY": "idempotencyKey",
  "ATTEMPT": "attempt",
  "SEQ": "seq",
  "WORKER": "worker",
  "CANCEL_REQUESTED": "cancelRequested",
  "CHUNK_COUNT": "chunks",
  "OUTPUT_LENGTH": "outputLength",
  "OUTPUT_PAGES": "outputPages",
  "REASONING_TRUNCATED": "reasoningTruncated",
  "USAGE": "usage",
  "COST": "cost",
  "CACHE_DISCOUNT": "cacheDiscount",
  "COST_SOURCE": "costSource",
  "ESTIMATED_COST": "estimatedCost",
  "FINISH_REASON": "finishReason",
  "OUTPUT_FORMAT": "outputFormat",
  "TOOL_CALLS": "toolCalls",
  "LOGPROBS": "logprobs",
  "ERROR": "error",
  "CREATED_AT": "createdAt",
  "STARTED_AT": "startedAt",
  "FIRST_TOKEN_AT": "firstTokenAt",
  "FINISHED_AT": "finishedAt",
  "UPDATED_AT": "updatedAt",
  "RESTARTED_AT": "restartedAt",
  "EXPIRE_AT": "expireAt",
  "WRITES": "writes"
});
export const ChunkField = Object.freeze({
  "ATTEMPT": "attempt",
  "SEQ": "seq",
  "START": "start",
  "END": "end",
  "TEXT": "text",
  "REASONING": "reasoning",
  "EXPIRE_AT": "expireAt"
});
export const StopField = Object.freeze({
  "REQUESTED_AT": "requestedAt",
  "EXPIRE_AT": "expireAt"
});
export const UsageField = Object.freeze({
  "PROMPT_TOKENS": "promptTokens",
  "COMPLETION_TOKENS": "completionTokens",
  "TOTAL_TOKENS": "totalTokens",
  "REASONING_TOKENS": "reasoningTokens",
  "CACHED_TOKENS": "cachedTokens",
  "CACHE_WRITE_TOKENS": "cacheWriteTokens"
});
export const ErrorField = Object.freeze({
  "CODE": "code",
  "MESSAGE": "message",
  "UPSTREAM_STATUS": "upstreamStatus"
});
export const PageField = Object.freeze({
  "ATTEMPT": "attempt",
  "INDEX": "index",
  "START": "start",
  "END": "end",
  "TEXT": "text",
  "REASONING": "reasoning",
  "EXPIRE_AT": "expireAt"
});
export const AccountField = Object.freeze({
  "ACTIVE": "active",
  "RESERVED_USD": "reservedUsd",
  "RECENT_STARTS": "recentStarts",
  "KEY_CALLS": "keyCalls",
  "BATCH_LANES": "batchLanes",
  "UPDATED_AT": "updatedAt"
});
export const DayField = Object.freeze({
  "DAY": "day",
  "SHARD": "shard",
  "EXECUTIONS": "executions",
  "PROMPT_TOKENS": "promptTokens",
  "COMPLETION_TOKENS": "completionTokens",
  "COST": "cost",
  "USER_KEY_EXECUTIONS": "userKeyExecutions",
  "USER_KEY_PROMPT_TOKENS": "userKeyPromptTokens",
  "USER_KEY_COMPLETION_TOKENS": "userKeyCompletionTokens",
  "USER_KEY_COST": "userKeyCost",
  "ESTIMATED_COST": "estimatedCost",
  "CACHED_TOKENS": "cachedTokens",
  "CACHE_DISCOUNT": "cacheDiscount",
  "EXPIRE_AT": "expireAt"
});
export const BatchField = Object.freeze({
  "OWNER": "ownerUid",
  "STATUS": "status",
  "TITLE": "title",
  "COUNTS": "counts",
  "USAGE": "usage",
  "COST": "cost",
  "CACHE_DISCOUNT": "cacheDiscount",
  "ESTIMATED_COST": "estimatedCost",
  "EXECUTIONS": "executions",
  "MAX_CONCURRENCY": "maxConcurrency",
  "ROUND": "round",
  "REQUESTED_MODEL": "requestedModel",
  "KEY_SOURCE": "keySource",
  "HOLDS": "holds",
  "RESERVED_USD": "reservedUsd",
  "PROJECT_HOLD": "projectHold",
  "PROJECT_SHARD": "projectShard",
  "WRITING": "writing",
  "WRITTEN_AT": "writtenAt",
  "SETTLED": "settled",
  "IDEMPOTENCY_KEY": "idempotencyKey",
  "REQUEST_HASH": "requestHash",
  "CANCEL_REQUESTED": "cancelRequested",
  "CREATED_AT": "createdAt",
  "STARTED_AT": "startedAt",
  "FINISHED_AT": "finishedAt",
  "UPDATED_AT": "updatedAt",
  "FOLDED_AT": "foldedAt",
  "FOLD_SECONDS": "foldSeconds",
  "EXPIRE_AT": "expireAt",
  "WRITES": "writes",
  "LANES": "lanes",
  "LANES_ACTIVE": "lanesActive",
  "LANES_PARKED": "lanesParked",
  "WAITING_FOR": "waitingFor",
  "PROVIDER_WAIT": "providerWait",
  "LANE": "lane",
  "UPSTREAM": "upstream"
});
export const Count = Object.freeze({
  "TOTAL": "total",
  "QUEUED": "queued",
  "RUNNING": "running",
  "SUCCEEDED": "succeeded",
  "FAILED": "failed",
  "CANCELLED": "cancelled"
});
export const CostSource = Object.freeze({
  "STREAM": "stream",
  "GENERATION": "generation"
});
export const OutputFormat = Object.freeze({
  "JSON": "json"
});
export const Code = Object.freeze({
  "UPSTREAM_BAD_REQUEST": "upstream_bad_request",
  "UPSTREAM_UNAUTHORIZED": "upstream_unauthorized",
  "UPSTREAM_PAYMENT_REQUIRED": "upstream_payment_required",
  "UPSTREAM_FORBIDDEN": "upstream_forbidden",
  "UPSTREAM_TIMEOUT": "upstream_timeout",
  "UPSTREAM_RATE_LIMITED": "upstream_rate_limited",
  "UPSTREAM_UNAVAILABLE": "upstream_unavailable",
  "UPSTREAM_ERROR": "upstream_error",
  "STREAM_ERROR": "stream_error",
  "CONNECTION_LOST": "connection_lost",
  "MALFORMED_CHUNK": "malformed_chunk",
  "FIRST_TOKEN_TIMEOUT": "first_token_timeout",
  "STREAM_STALLED": "stream_stalled",
  "DEADLINE_EXCEEDED": "deadline_exceeded",
  "ATTEMPTS_EXHAUSTED": "attempts_exhausted",
  "QUEUE_TIMEOUT": "queue_timeout",
  "OUTPUT_TOO_LARGE": "output_too_large",
  "OUTPUT_NOT_JSON": "output_not_json",
  "OUTPUT_SCHEMA_MISMATCH": "output_schema_mismatch",
  "OUTPUT_SCHEMA_TOO_COSTLY": "output_schema_too_costly",
  "BATCH_EXPIRED": "batch_expired",
  "UPSTREAM_BATCH_FAILED": "upstream_batch_failed",
  "RESERVATION_EXCEEDED": "reservation_exceeded",
  "WRITE_REFUSED": "write_refused",
  "ENQUEUE_FAILED": "enqueue_failed",
  "USER_KEY_REFUSED": "user_key_refused",
  "USER_KEY_NO_CREDIT": "user_key_no_credit",
  "USER_KEY_MISSING": "user_key_missing",
  "INTERNAL": "internal",
  "LOST_CLAIM": "lost_claim",
  "CANCELLED": "cancelled"
});
export const Callable = Object.freeze({
  "START_EXECUTION": "start_execution",
  "GET_EXECUTION": "get_execution",
  "CANCEL_EXECUTION": "cancel_execution",
  "LIST_EXECUTIONS": "list_executions",
  "GET_USAGE": "get_usage",
  "SET_API_KEY": "set_api_key",
  "GET_API_KEY": "get_api_key",
  "DELETE_API_KEY": "delete_api_key",
  "START_BATCH": "start_batch",
  "GET_BATCH": "get_batch",
  "GET_BATCH_RESULTS": "get_batch_results",
  "CANCEL_BATCH": "cancel_batch",
  "RETRY_BATCH": "retry_batch",
  "RESUME_BATCH": "resume_batch",
  "CREATE_WEBHOOK_ENDPOINT": "create_webhook_endpoint",
  "LIST_WEBHOOK_ENDPOINTS": "list_webhook_endpoints",
  "DELETE_WEBHOOK_ENDPOINT": "delete_webhook_endpoint",
  "ROTATE_WEBHOOK_SECRET": "rotate_webhook_secret",
  "GET_ADMIN_STATS": "get_admin_stats"
});
export const CallStatus = Object.freeze({
  "INVALID_ARGUMENT": "invalid-argument",
  "NOT_FOUND": "not-found",
  "FAILED_PRECONDITION": "failed-precondition",
  "PERMISSION_DENIED": "permission-denied",
  "UNAUTHENTICATED": "unauthenticated",
  "RESOURCE_EXHAUSTED": "resource-exhausted",
  "ALREADY_EXISTS": "already-exists",
  "UNAVAILABLE": "unavailable",
  "INTERNAL": "internal"
});
export const Reason = Object.freeze({
  "INVALID": "invalid",
  "PAST_END": "past_end",
  "MAX_ACTIVE": "max_active",
  "STARTS_PER_MINUTE": "starts_per_minute",
  "DAILY_BUDGET": "daily_budget",
  "KEY_REFUSED": "key_refused",
  "PROJECT_BUDGET": "project_budget",
  "KEY_CALLS_PER_MINUTE": "key_calls_per_minute",
  "MODEL_PRICE": "model_price"
});
export const Start = Object.freeze({
  "PROMPT": "prompt",
  "MESSAGES": "messages",
  "PROMPT_ID": "promptId",
  "VARIABLES": "variables",
  "MODEL": "model",
  "MODELS": "models",
  "PARAMS": "params",
  "IDEMPOTENCY_KEY": "idempotencyKey"
});
// The names of @promptq/web 0.2 (one letter each), kept for apps written against them: deprecated.
export const F = ExecutionField;
export const C = ChunkField;
export const S = StopField;
export const U = UsageField;
export const E = ErrorField;
export const P = PageField;
export const Acc = AccountField;
export const Use = DayField;
export const B = BatchField;
