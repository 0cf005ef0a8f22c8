// A JSON answer as a card that fills in while it streams: `partial` (what the text so far parses
// to) shows each field as it grows, `partialComplete` says which are whole, and `json` (the
// checked value) replaces them once the execution succeeded.

/** The answer's JSON Schema: OpenAI's `response_format: {type: "json_schema"}`. */
export const CARD_FORMAT = {
  type: "json_schema",
  json_schema: {
    name: "card",
    strict: true,
    schema: {
      type: "object",
      properties: {
        title: { type: "string" },
        summary: { type: "string", minLength: 40 },
        facts: { type: "array", items: { type: "string" }, minItems: 3 },
        confidence: { type: "number", minimum: 0, maximum: 1 },
      },
      required: ["title", "summary", "facts", "confidence"],
      additionalProperties: false,
    },
  },
};

const FIELDS = Object.keys(CARD_FORMAT.json_schema.schema.properties);

/** @param {{execution: import("@promptq/web").ExecutionState}} props */
export function JsonCard({ execution }) {
  const checked = execution.json !== undefined;
  const card = checked ? execution.json : execution.partial;
  if (card === undefined || card === null || typeof card !== "object") return null;
  const complete = checked ? FIELDS : execution.partialComplete ?? [];
  return (
    <section id="card" className="card" data-checked={checked}>
      <p id="card-state">{checked ? "checked" : `streaming: ${complete.length} of ${FIELDS.length} fields complete`}</p>
      {FIELDS.map((field) => (
        <div key={field} id={`card-${field}`} data-complete={complete.includes(field)} style={{ opacity: complete.includes(field) ? 1 : 0.55 }}>
          <strong>{field}</strong> {complete.includes(field) ? "✓" : field in card ? "…" : ""}
          <div className="value" style={{ whiteSpace: "pre-wrap" }}>{show(card[field])}</div>
        </div>
      ))}
    </section>
  );
}

/** @param {unknown} value */
function show(value) {
  if (value === undefined) return "";
  if (Array.isArray(value)) return value.map((item) => `• ${item}`).join("\n");
  return typeof value === "string" ? value : JSON.stringify(value);
}
