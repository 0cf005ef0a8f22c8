// What a request may carry besides its prompt (OpenRouter's names, as the callables accept
// them): content parts, tool calls, structured outputs, reasoning, provider routing, tools.
// Types only.

/**
 * A part of a message's content: text, an image (https or data URL) or a PDF file.
 * @typedef {{type: "text", text: string}
 *   | {type: "image_url", image_url: {url: string, detail?: "auto" | "low" | "high"}}
 *   | {type: "file", file: {file_data: string, filename?: string}}} ContentPart
 */

/**
 * A tool call, as the model made it (an assistant message's `tool_calls`, an execution's `toolCalls`).
 * @typedef {object} ToolCall
 * @property {string} id
 * @property {"function"} type
 * @property {{name: string, arguments: string}} function  `arguments`: JSON text, as the model wrote it
 */

/**
 * @typedef {object} Message
 * @property {"system" | "user" | "assistant" | "tool"} role
 * @property {string | ContentPart[] | null} [content]  a list of parts in user messages only
 * @property {ToolCall[]} [tool_calls]  an assistant message that called tools
 * @property {string} [tool_call_id]    a tool message: the call it answers
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
 */

export {};
