// Run a prompt, watch its answer stream in, stop it: startExecution, useExecution and
// stopExecution from @promptq/web. Asked for a JSON card, the answer fills in a card field by
// field as it streams (JsonCard.jsx: the state's `partial`, `partialComplete` and `json`).

import { startExecution, stopExecution } from "@promptq/web";
import { useExecution } from "@promptq/web/react";
import { useState } from "react";
import { db, functions } from "./firebase.js";
import { CARD_FORMAT, JsonCard } from "./JsonCard.jsx";

export function App({ user }) {
  const [executionId, setExecutionId] = useState(null);
  const [error, setError] = useState(null);
  const execution = useExecution(db, executionId, { onError: setError });  // undefined until the first snapshot

  async function run(event) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const model = form.get("model").trim();
    const params = form.get("card") ? { params: { response_format: CARD_FORMAT } } : {};
    setError(null);
    try {
      const started = await startExecution(functions, { prompt: form.get("prompt"), ...(model && { model }), ...params });
      setExecutionId(started.executionId);
    } catch (err) {
      setError(err);
    }
  }

  const stop = () => stopExecution(db, executionId).catch(setError);
  return (
    <main>
      <h1>promptq</h1>
      <p>Signed in as <span id="user">{user.email}</span></p>
      <form onSubmit={run}>
        <label>Model <input id="model" name="model" defaultValue="openai/gpt-4o-mini" /></label>
        <label>Prompt <textarea id="prompt" name="prompt" rows={3} required /></label>
        <label><input id="card-answer" name="card" type="checkbox" /> Answer as a JSON card</label>
        <button id="run" type="submit">Run</button>
        <button id="stop" type="button" onClick={stop} disabled={!execution?.live || execution.cancelRequested}>Stop</button>
      </form>
      <p>
        <span id="status">{execution?.status ?? (executionId ? "starting" : "")}</span>{" "}
        <code id="execution-id">{executionId}</code>
      </p>
      <pre id="output" style={{ whiteSpace: "pre-wrap" }}>{execution?.text}</pre>
      {execution && <JsonCard execution={execution} />}
      {execution?.usage && <p id="usage">{execution.usage.completionTokens} completion tokens</p>}
      {error && <p id="error" role="alert">{`${error.code ?? "error"}: ${error.message}`}</p>}
    </main>
  );
}
