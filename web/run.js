// The run form (startExecution: the start_execution callable) and the Stop button.

import { startExecution } from "@promptq/web";
import { Start } from "@promptq/web/schema";
import { $, fail } from "./dom.js";
import { templateRequest } from "./templates.js";

/**
 * The request the form describes: the model (none: the server's default), either the prompt
 * text (with the attached image: a user message of a text part and an image_url part) or the
 * chosen template with its variables, and a JSON answer if asked for.
 * @returns {Promise<Object<string, unknown>>}
 */
export async function formRequest() {
  const data = {};
  const model = $("model").value.trim();
  if (model) data[Start.MODEL] = model;
  if (/** @type {HTMLInputElement} */ ($("json-answer")).checked) data[Start.PARAMS] = { response_format: { type: "json_object" } };
  if ($("source-template").checked) return { ...data, ...templateRequest() };
  const image = /** @type {HTMLInputElement} */ ($("image")).files?.[0];
  if (!image) return { ...data, [Start.PROMPT]: $("prompt").value };
  const content = [{ type: "text", text: $("prompt").value }, { type: "image_url", image_url: { url: await dataUrl(image) } }];
  return { ...data, [Start.MESSAGES]: [{ role: "user", content }] };
}

/** @param {Blob} file */
function dataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result));
    reader.onerror = () => reject(reader.error);
    reader.readAsDataURL(file);
  });
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
      const { executionId } = await startExecution(functions, await formRequest());
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
