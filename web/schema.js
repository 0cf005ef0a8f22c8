// Generated from promptq/schema.py by `make web-schema`: do not edit.

export const EXECUTIONS = "executions";
export const PAGES = "pages";
export const USERS = "users";
export const PROMPTS = "prompts";
export const TEMPLATE_CONTENT = "content";
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
export const F = Object.freeze({
  "STATUS": "status",
  "OWNER": "ownerUid",
  "MESSAGES": "messages",
  "REQUEST": "request",
  "IDEMPOTENCY_KEY": "idempotencyKey",
  "OUTPUT": "output",
  "OUTPUT_OFFSET": "outputOffset",
  "OUTPUT_PAGES": "outputPages",
  "REASONING": "reasoning",
  "REASONING_TRUNCATED": "reasoningTruncated",
  "SEQ": "seq",
  "MODEL": "model",
  "GENERATION_ID": "generationId",
  "USAGE": "usage",
  "COST": "cost",
  "COST_SOURCE": "costSource",
  "FINISH_REASON": "finishReason",
  "ERROR": "error",
  "ATTEMPT": "attempt",
  "ATTEMPT_ID": "attemptId",
  "LEASE_EXPIRES_AT": "leaseExpiresAt",
  "ATTEMPTS": "attempts",
  "RESTARTED_AT": "restartedAt",
  "CANCEL_REQUESTED": "cancelRequested",
  "CREATED_AT": "createdAt",
  "STARTED_AT": "startedAt",
  "FIRST_TOKEN_AT": "firstTokenAt",
  "FINISHED_AT": "finishedAt",
  "UPDATED_AT": "updatedAt",
  "WRITES": "writes",
  "REQUEUES": "requeues",
  "RETRY_AT": "retryAt",
  "REQUEST_HASH": "requestHash",
  "TASK": "task"
});
export const Req = Object.freeze({
  "MODEL": "model",
  "MODELS": "models",
  "PARAMS": "params",
  "PROMPT_ID": "promptId",
  "VARIABLES": "variables"
});
export const U = Object.freeze({
  "PROMPT_TOKENS": "promptTokens",
  "COMPLETION_TOKENS": "completionTokens",
  "TOTAL_TOKENS": "totalTokens",
  "REASONING_TOKENS": "reasoningTokens"
});
export const E = Object.freeze({
  "CODE": "code",
  "MESSAGE": "message",
  "UPSTREAM_STATUS": "upstreamStatus"
});
export const P = Object.freeze({
  "INDEX": "index",
  "START": "start",
  "END": "end",
  "TEXT": "text",
  "ATTEMPT": "attempt"
});
export const CostSource = Object.freeze({
  "STREAM": "stream",
  "GENERATION": "generation"
});
export const Callable = Object.freeze({
  "START_EXECUTION": "start_execution",
  "GET_EXECUTION": "get_execution",
  "CANCEL_EXECUTION": "cancel_execution"
});
