// @promptq/web: start LLM prompts on promptq and follow them as they stream into Firestore.
//
//   import { startExecution, watchExecution } from "@promptq/web";
//   const { executionId } = await startExecution(functions, { prompt: "Hello" });
//   watchExecution(db, executionId, { onUpdate: (s) => render(s.text) });
//
// React hooks: "@promptq/web/react"; every name the documents use: "@promptq/web/schema".

export * from "./batch.js";
export * from "./calls.js";
export * from "./endpoints.js";
export * from "./request.js";
export * from "./watch.js";
export { BatchStatus, CallStatus, Code, Reason, Status } from "./schema.js";
