// What a request may carry besides its prompt (OpenRouter's names, as the callables accept
// them): content parts, tool calls, structured outputs, reasoning, provider routing, tools.
// Types only.

/**
 * A prompt-caching breakpoint: the prompt up to and including its part is cached (5 minutes, or an hour).
 * @typedef {{type: "ephemeral", ttl?: "5m" | "1h"}} CacheControl
 */

/**
 * A part of a message's content: text, an image (https or data URL) or a PDF file; any may carry
 * a `cache_control` breakpoint (at most 4 in a request).
 * @typedef {{type: "text", text: string, cache_control?: CacheControl}
 *   | {type: "image_url", image_url: {url: string, detail?: "auto" | "low" | "high"}, cache_control?: CacheControl}
 *   | {type: "file", file: {file_data: string, filename?: string}, cache_control?: CacheControl}} ContentPart
 */

/**
 * A tool call, as the model made it (an assistant message's `tool_calls`, an execution's `toolCalls`).
 * @typedef {object} ToolCall
 * @property {string} id
 * @property {"function"} type
 * @property {{name: string, arguments: string}} function  `arguments`: JSON text, as the model wrote it
 */

/**
 * A message; an assistant message as the OpenAI SDK or OpenRouter returned it is taken back as is
 * (`reasoning` and `reasoning_details` go upstream; `refusal`, `annotations`, `audio` and a null
 * `function_call` are dropped).
 * @typedef {object} Message
 * @property {"system" | "user" | "assistant" | "tool"} role
 * @property {string | ContentPart[] | null} [content]  images and files in user messages only
 * @property {ToolCall[]} [tool_calls]  an assistant message that called tools
 * @property {string} [tool_call_id]    a tool message: the call it answers
 * @property {string} [name]            a participant's name (not on a tool message)
 * @property {string | null} [reasoning]        an assistant message: its reasoning text
 * @property {object[] | null} [reasoning_details]  an assistant message: its reasoning, as OpenRouter gave it
 * @property {string | null} [refusal]          dropped (the content of a message that has none)
 * @property {object[] | null} [annotations]    dropped
 * @property {object | null} [audio]            dropped
 * @property {null} [function_call]             dropped (OpenAI's deprecated form; null only)
 */

/**
 * @typedef {{type: "text"} | {type: "json_object"}
 *   | {type: "json_schema", json_schema: {name: string, schema: object, strict?: boolean, description?: string}}} ResponseFormat
 */

/**
 * @typedef {object} Reasoning
 * @property {"minimal" | "low" | "medium" | "high"} [effort]  or max_tokens, not both
 * @property {number} [max_tokens]
 * @property {boolean} [exclude]  reason, but do not return the reasoning
 * @property {boolean} [enabled]
 */

/**
 * OpenRouter's provider preferences, passed through.
 * @typedef {object} ProviderPreferences
 * @property {string[]} [order]
 * @property {string[]} [only]
 * @property {string[]} [ignore]
 * @property {boolean} [allow_fallbacks]
 * @property {boolean} [require_parameters]
 * @property {"allow" | "deny"} [data_collection]
 * @property {boolean} [zdr]
 * @property {"price" | "throughput" | "latency"} [sort]
 * @property {{prompt?: number, completion?: number, image?: number, audio?: number, request?: number}} [max_price]
 * @property {string[]} [quantizations]
 */

/**
 * @typedef {{type: "function", function: {name: string, description?: string, parameters?: object, strict?: boolean}}} Tool
 */

/**
 * OpenRouter's plugins promptq knows the fees of.
 * @typedef {{id: "web", max_results?: number, search_prompt?: string, engine?: "native" | "exa",
 *     include_domains?: string[], exclude_domains?: string[]}
 *   | {id: "file-parser", pdf?: {engine?: "pdf-text" | "native"}}
 *   | {id: "response-healing"}} Plugin
 */

/**
 * Parameters passed to the model (OpenRouter's names).
 * @typedef {object} Params
 * @property {number} [temperature]  0 to 2
 * @property {number} [top_p]        above 0, at most 1
 * @property {number} [max_tokens]
 * @property {string | string[]} [stop]  at most 4 sequences
 * @property {number} [seed]
 * @property {ResponseFormat} [response_format]  the answer as JSON (checked against the schema when it ends)
 * @property {Reasoning} [reasoning]
 * @property {ProviderPreferences} [provider]
 * @property {Tool[]} [tools]
 * @property {"none" | "auto" | "required" | {type: "function", function: {name: string}}} [tool_choice]
 * @property {boolean} [parallel_tool_calls]
 * @property {Plugin[]} [plugins]         OpenRouter's plugins (the web search's fee is reserved)
 * @property {"middle-out"[]} [transforms]
 * @property {boolean} [logprobs]         the answer's log probabilities, with the ending (`logprobs`)
 * @property {number} [top_logprobs]      0 to 20 alternatives per token (with `logprobs: true`)
 * @property {"low" | "medium" | "high"} [verbosity]
 * @property {string} [user]              the end user, for the provider's abuse signals (default: a hash of the caller's uid)
 */

export {};
