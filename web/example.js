// The smallest app that follows a promptq execution: sign in, then watchExecution() from the
// package @promptq/web (example.html's import map points it at packages/web/src/).
// Open /example.html#<executionId>. It records what the helper reports on `window`
// (`updates`, `final`, `errors`, and `handle` for `handle.stop()`): tests read them there.

import { config } from "/config.js";
import { watchExecution } from "@promptq/web";
import { initializeApp } from "firebase/app";
import { connectAuthEmulator, createUserWithEmailAndPassword, getAuth, signInWithEmailAndPassword } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";

Object.assign(window, { updates: [], final: null, errors: [], handle: null });
const $ = (id) => document.getElementById(id);

async function main() {
  if (config.error) throw new Error(config.error);
  const app = initializeApp({ apiKey: config.apiKey, projectId: config.projectId });
  const auth = getAuth(app);
  connectAuthEmulator(auth, config.authEmulator, { disableWarnings: true });
  const db = getFirestore(app);
  connectFirestoreEmulator(db, config.firestoreEmulator.host, config.firestoreEmulator.port);

  // The local test user; created on first use. The rules let owners read their executions.
  const [email, password] = ["test@promptq.local", "test-password"];
  await signInWithEmailAndPassword(auth, email, password)
    .catch(() => createUserWithEmailAndPassword(auth, email, password));

  window.handle = watchExecution(db, location.hash.slice(1), {
    onUpdate: (state) => {
      window.updates.push({ ...state });
      $("status").textContent = `${state.status} · attempt ${state.attempt} · seq ${state.seq}`;
      $("output").textContent = state.text;
    },
    onError: (err) => window.errors.push(`${err.code ?? "error"}: ${err.message}`),
  });
  window.final = await window.handle.done;
}

main().catch((err) => {
  if (!window.errors.length) window.errors.push(`${err.code ?? "error"}: ${err.message}`);
  $("status").textContent = String(err.message ?? err);
});
