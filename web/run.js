// The run form (startExecution: the start_execution callable) and the Stop button.

import { startExecution } from "@promptq/web";
import { Start } from "@promptq/web/schema";
import { $, fail } from "./dom.js";
import { templateRequest } from "./templates.js";

/**
 * The request the form describes: the model (none: the server's default) and either the
 * prompt text or the chosen template with its variables.
 * @returns {Object<string, unknown>}
 */
export function formRequest() {
  const data = {};
  const model = $("model").value.trim();
  if (model) data[Start.MODEL] = model;
  if ($("source-template").checked) return { ...data, ...templateRequest() };
  data[Start.PROMPT] = $("prompt").value;
  return data;
}

/**
 * Wire Run and Stop. `onStarted(id)` shows a new execution; `current()` is the execution
 * shown (`{handle, stopping}`, see view.js), which Stop stops.
 * @param {import("firebase/functions").Functions} functions
 * @param {{onStarted: (executionId: string) => void, current: () => ?{handle: {stop: () => Promise<void>}, stopping: boolean}}} hooks
 */
export function setupRun(functions, { onStarted, current }) {
  $("run-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const run = $("run");
    $("call-error").hidden = true;
    run.disabled = true;
    run.textContent = "Starting…";
    try {
      const { executionId } = await startExecution(functions, formRequest());
      onStarted(executionId);
    } catch (err) {
      fail($("call-error"), err);
    } finally {
      run.disabled = false;
      run.textContent = "Run";
    }
  });

  $("stop").addEventListener("click", async () => {
    const execution = current();
    if (!execution) return;
    execution.stopping = true;
    $("stop").disabled = true;
    $("status-note").textContent = "stop requested…";
    try {
      // The one field the rules let a client write (infra/firestore.rules); the worker
      // watches its document and closes the upstream stream within about a second.
      await execution.handle.stop();
    } catch (err) {
      execution.stopping = false;
      fail($("call-error"), err, "stop: ");
    }
  });
}
