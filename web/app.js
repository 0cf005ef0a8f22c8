// promptq's demo page: sign in, start an execution through the `start_execution` callable,
// and watch `executions/{id}` with watchExecution, both from the npm package @promptq/web
// (packages/web/, served by serve.py under /vendor/promptq/). What the page shows is what has
// arrived. The modules: auth.js (sign-in), templates.js (prompt templates), run.js (Run and
// Stop), view.js (the execution), batch.js (the batch form, the user's batches, a batch's view),
// account.js (spend, own key, history), operator.js (#admin), dom.js (helpers); names come from
// "@promptq/web/schema".

import { config } from "/config.js";
import { initializeApp } from "firebase/app";
import { connectAuthEmulator, getAuth } from "firebase/auth";
import { connectFirestoreEmulator, getFirestore } from "firebase/firestore";
import { connectFunctionsEmulator, getFunctions } from "firebase/functions";
import { setupAccount } from "./account.js";
import { setupAuth } from "./auth.js";
import { hideBatch, setupBatchForm, showBatch, shownBatch, watchBatches } from "./batch.js";
import { $, show } from "./dom.js";
import { setupOperator } from "./operator.js";
import { setupRun } from "./run.js";
import { setupTemplates } from "./templates.js";
import { currentExecution, hideExecution, showExecution } from "./view.js";

if (config.error) {
  show($("fatal"), config.error);
} else {
  start();
}

function start() {
  const app = initializeApp({ apiKey: config.apiKey, projectId: config.projectId, authDomain: `${config.projectId}.firebaseapp.com` });
  const auth = getAuth(app);
  connectAuthEmulator(auth, config.authEmulator, { disableWarnings: true });
  const db = getFirestore(app);
  connectFirestoreEmulator(db, config.firestoreEmulator.host, config.firestoreEmulator.port);
  const functions = getFunctions(app, config.region);
  connectFunctionsEmulator(functions, config.functionsEmulator.host, config.functionsEmulator.port);
  show($("env"), `local emulators · project ${config.projectId}`);

  // #/executions/{id} or #/batches/{id} in the address: watch it (after a reload, or from a link).
  const watchLinked = () => {
    const m = location.hash.match(/^#\/(executions|batches)\/([A-Za-z0-9_-]{1,128})$/);
    if (!m || !auth.currentUser) return;
    if (m[1] === "executions" && currentExecution()?.id !== m[2]) showExecution(db, m[2]);
    if (m[1] === "batches" && shownBatch() !== m[2]) showBatch(db, auth.currentUser.uid, m[2], functions);
  };
  window.addEventListener("hashchange", watchLinked);

  const watchTemplates = setupTemplates(db, auth);
  const watchAccount = setupAccount(db, functions);
  const watchOperator = setupOperator(functions);
  const signedOut = [];  // unsubscribe functions to run on sign-out
  setupAuth(auth, {
    onSignedIn: (user) => {
      $("batch-form").hidden = false;
      signedOut.push(watchTemplates(user.uid), watchAccount(user.uid), watchBatches(db, user.uid), watchOperator(user));
      watchLinked();
    },
    onSignedOut: () => {
      signedOut.splice(0).forEach((unsubscribe) => unsubscribe());
      $("batch-form").hidden = true;
      hideExecution();
      hideBatch();
    },
  });
  setupRun(functions, { onStarted: (id) => showExecution(db, id), current: currentExecution });
  setupBatchForm(functions);
}
