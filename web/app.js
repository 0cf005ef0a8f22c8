// promptq's web page: sign in, start an execution through the `start_execution` callable,
// and watch `executions/{id}` with a Firestore listener. What the page shows is what has
// arrived: listeners may skip versions, and every version carries the whole text so far.

import { config } from "/config.js";
import { initializeApp } from "/vendor/firebase/firebase-app.js";
import {
  connectAuthEmulator, createUserWithEmailAndPassword, getAuth, onAuthStateChanged,
  signInWithEmailAndPassword, signOut,
} from "/vendor/firebase/firebase-auth.js";
import {
  collection, connectFirestoreEmulator, deleteDoc, doc, getDoc, getFirestore, onSnapshot, setDoc, updateDoc,
} from "/vendor/firebase/firebase-firestore.js";
import { connectFunctionsEmulator, getFunctions, httpsCallable } from "/vendor/firebase/firebase-functions.js";

// Field names and states of the execution document: promptq/execution.py (class F, Status).
const F = {
  STATUS: "status", OUTPUT: "output", OUTPUT_OFFSET: "outputOffset", OUTPUT_PAGES: "outputPages",
  REASONING: "reasoning", REASONING_TRUNCATED: "reasoningTruncated", SEQ: "seq", MODEL: "model",
  REQUEST: "request", USAGE: "usage", COST: "cost", COST_SOURCE: "costSource",
  FINISH_REASON: "finishReason", ERROR: "error", ATTEMPT: "attempt",
  CANCEL_REQUESTED: "cancelRequested", CREATED_AT: "createdAt", STARTED_AT: "startedAt",
  FIRST_TOKEN_AT: "firstTokenAt", FINISHED_AT: "finishedAt",
};
const LIVE = new Set(["queued", "running"]);
const EXECUTIONS = "executions";
const PAGES = "pages";  // executions/{id}/pages/{000000..}: sealed text before `output` starts
const TEST_USER = { email: "test@promptq.local", password: "test-password" };
// `{name}` placeholders; `{{` and `}}` are literal braces (enqueue/request.py, _TOKEN).
const PLACEHOLDER = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

const $ = (id) => document.getElementById(id);

function show(el, text) {
  el.textContent = text;
  el.hidden = !text;
}

// Only when it changes: a live region re-announces every write, even of the same text.
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function fail(el, err, prefix = "") {
  show(el, prefix + describe(err));
}

// "functions/invalid-argument" -> "INVALID_ARGUMENT: <message>"; Auth and Firestore codes as given.
function describe(err) {
  const code = String(err?.code ?? "error");
  if (code.startsWith("functions/")) {
    return `${code.slice(10).replaceAll("-", "_").toUpperCase()}: ${err.message}`;
  }
  return `${code}: ${err?.message ?? err}`;
}

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
  const startExecution = httpsCallable(functions, "start_execution");

  show($("env"), `local emulators · project ${config.projectId}`);

  const signedOut = [];  // unsubscribe functions to run on sign-out
  let execution = null;  // the execution being watched (see watch())

  // --- auth -----------------------------------------------------------------------------

  onAuthStateChanged(auth, (user) => {
    $("auth-section").hidden = !!user;
    $("account").hidden = !user;
    $("run-section").hidden = !user;
    if (!user) {
      signedOut.splice(0).forEach((unsubscribe) => unsubscribe());
      execution?.unsubscribe();
      execution = null;
      $("execution").hidden = true;
      return;
    }
    $("user-email").textContent = user.email ?? user.uid;
    signedOut.push(watchTemplates(user.uid));
    watchLinked();
  });

  // #/executions/{id} in the address: watch that execution (after a reload, or from a link).
  function watchLinked() {
    const m = location.hash.match(/^#\/executions\/([A-Za-z0-9_-]{1,128})$/);
    if (m && auth.currentUser && execution?.id !== m[1]) watch(m[1]);
  }
  window.addEventListener("hashchange", watchLinked);

  async function signIn(email, password, { create }) {
    $("auth-error").hidden = true;
    try {
      await signInWithEmailAndPassword(auth, email, password);
    } catch (err) {
      const unknown = ["auth/user-not-found", "auth/invalid-credential", "auth/invalid-login-credentials"];
      if (!create || !unknown.includes(err.code)) throw err;
      await createUserWithEmailAndPassword(auth, email, password);
    }
  }

  $("signin-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    signIn($("email").value, $("password").value, { create: false }).catch((err) => fail($("auth-error"), err));
  });
  $("signup").addEventListener("click", () => {
    if (!$("signin-form").reportValidity()) return;
    createUserWithEmailAndPassword(auth, $("email").value, $("password").value).catch((err) => fail($("auth-error"), err));
  });
  $("signin").addEventListener("click", () => {
    signIn(TEST_USER.email, TEST_USER.password, { create: true }).catch((err) => fail($("auth-error"), err));
  });
  $("signout").addEventListener("click", () => {
    history.replaceState(null, "", location.pathname);
    signOut(auth);
  });

  // --- templates: users/{uid}/prompts/{id} = {content} ----------------------------------

  const variableValues = {};  // typed values by placeholder name, kept across re-renders
  let templates = new Map();

  function placeholders(content) {
    const names = [];
    for (const m of content.matchAll(PLACEHOLDER)) {
      if (m[1] && !names.includes(m[1])) names.push(m[1]);
    }
    return names;
  }

  function watchTemplates(uid) {
    return onSnapshot(collection(db, "users", uid, "prompts"), (snap) => {
      templates = new Map(snap.docs.map((d) => [d.id, d.data().content ?? ""]));
      const select = $("template");
      const keep = select.value;
      select.replaceChildren(...[...templates.keys()].map((id) => new Option(id, id)));
      if (templates.has(keep)) select.value = keep;
      $("no-templates").hidden = templates.size > 0;
      renderTemplate();
    }, (err) => fail($("call-error"), err, "templates: "));
  }

  function renderTemplate() {
    const id = $("template").value;
    const content = templates.get(id) ?? "";
    $("template-content").textContent = content;
    $("template-content").hidden = !id;
    $("delete-template").disabled = !id;
    const box = $("variables");
    box.replaceChildren(...placeholders(content).map((name) => {
      const label = document.createElement("label");
      label.textContent = name;
      const input = document.createElement("input");
      input.id = `var-${name}`;
      input.dataset.name = name;
      input.value = variableValues[name] ?? "";
      input.addEventListener("input", () => { variableValues[name] = input.value; });
      label.append(input);
      return label;
    }));
  }

  $("template").addEventListener("change", renderTemplate);
  for (const radio of document.querySelectorAll('input[name="source"]')) {
    radio.addEventListener("change", () => {
      const template = $("source-template").checked;
      $("prompt-box").hidden = template;
      $("template-box").hidden = !template;
    });
  }

  $("save-template-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const id = $("template-name").value.trim();
    const message = $("template-message");
    try {
      await setDoc(doc(db, "users", auth.currentUser.uid, "prompts", id), { content: $("template-text").value });
      message.textContent = `Saved template “${id}”.`;
      $("template").value = id;
      $("source-template").checked = true;
      $("source-template").dispatchEvent(new Event("change"));
      renderTemplate();
    } catch (err) {
      message.textContent = `Not saved: ${describe(err)}`;
    }
  });

  $("delete-template").addEventListener("click", async () => {
    const id = $("template").value;
    try {
      await deleteDoc(doc(db, "users", auth.currentUser.uid, "prompts", id));
      $("template-message").textContent = `Deleted template “${id}”.`;
    } catch (err) {
      fail($("call-error"), err, "delete: ");
    }
  });

  // --- run --------------------------------------------------------------------------------

  function request() {
    const data = {};
    const model = $("model").value.trim();
    if (model) data.model = model;  // none: the server's default model
    if ($("source-template").checked) {
      data.promptId = $("template").value;
      data.variables = {};
      for (const input of $("variables").querySelectorAll("input")) data.variables[input.dataset.name] = input.value;
    } else {
      data.prompt = $("prompt").value;
    }
    return data;
  }

  $("run-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const run = $("run");
    $("call-error").hidden = true;
    run.disabled = true;
    run.textContent = "Starting…";
    try {
      const result = await startExecution(request());
      watch(result.data.executionId);
    } catch (err) {
      fail($("call-error"), err);
    } finally {
      run.disabled = false;
      run.textContent = "Run";
    }
  });

  $("stop").addEventListener("click", async () => {
    const current = execution;
    if (!current) return;
    current.stopping = true;
    $("stop").disabled = true;
    $("status-note").textContent = "stop requested…";
    try {
      // The one field the rules let a client write (infra/firestore.rules); the worker
      // watches its document and closes the upstream stream within about a second.
      await updateDoc(doc(db, EXECUTIONS, current.id), { [F.CANCEL_REQUESTED]: true });
    } catch (err) {
      current.stopping = false;
      fail($("call-error"), err, "stop: ");
    }
  });

  // --- watching an execution ----------------------------------------------------------------

  function watch(id) {
    execution?.unsubscribe();
    history.replaceState(null, "", `#/executions/${id}`);
    const view = {
      id, seq: -1, attempt: null, shown: "", stopping: false, text: document.createTextNode(""), latest: null,
      // Answer text sealed into pages, fetched once each (pages never change within an attempt).
      sealed: "", sealedPages: 0, sealedChars: 0, sealedAttempt: null, fetching: false,
    };
    $("output").replaceChildren(view.text);
    $("execution-id").textContent = id;
    for (const el of ["usage", "timings", "error", "restart-note", "reasoning-box"]) $(el).hidden = true;
    for (const el of ["status", "status-note", "served-model", "seq", "attempt", "tokens"]) $(el).textContent = "";
    $("status").textContent = "starting";
    $("execution").hidden = false;
    view.unsubscribe = onSnapshot(doc(db, EXECUTIONS, id), (snap) => {
      if (execution === view) render(view, snap);
    }, (err) => {
      fail($("error"), err, "cannot watch this execution: ");
      $("stop").disabled = true;
    });
    execution = view;
  }

  function render(view, snap) {
    if (!snap.exists()) {
      $("status").textContent = "not found";
      $("stop").disabled = true;
      return;
    }
    const d = snap.data();
    const seq = d[F.SEQ] ?? 0;
    if (seq < view.seq) return;  // an older version than the one shown
    view.seq = seq;
    view.latest = d;

    const status = d[F.STATUS];
    const live = LIVE.has(status);
    setText($("status"), status);
    $("status").dataset.status = status;
    setText($("status-note"), live && (d[F.CANCEL_REQUESTED] || view.stopping) ? "stop requested…" : "");
    $("stop").disabled = !live || d[F.CANCEL_REQUESTED] === true || view.stopping;
    $("seq").textContent = String(seq);
    $("attempt").textContent = String(d[F.ATTEMPT] ?? 0);
    $("served-model").textContent = d[F.MODEL] ?? `${d[F.REQUEST]?.model ?? "?"} (requested)`;
    $("output").setAttribute("aria-busy", String(live));

    renderText(view, d);
    renderReasoning(d);
    renderTokens(view, d);
    renderUsage(d);
    renderTimings(d);
    renderError(d);
  }

  // The whole answer is the sealed pages followed by `output`; a long answer's older text
  // moves into pages (in order, each sealed once), so `output` alone may shrink.
  function renderText(view, d) {
    const attempt = d[F.ATTEMPT] ?? 0;
    const pages = d[F.OUTPUT_PAGES] ?? 0;
    if (view.sealedAttempt !== attempt || pages < view.sealedPages) {
      Object.assign(view, { sealed: "", sealedPages: 0, sealedChars: 0, sealedAttempt: attempt });
    }
    if (pages > view.sealedPages) {
      fetchPages(view);  // shows the text once the pages before `output` are here
      return;
    }
    const output = view.sealed + (d[F.OUTPUT] ?? "");
    if (output.startsWith(view.shown)) {
      view.text.appendData(output.slice(view.shown.length));  // only what arrived since
    } else {
      view.text.data = output;  // a new attempt started the answer over
    }
    if (view.attempt !== null && attempt !== view.attempt && output.length < view.shown.length) {
      show($("restart-note"), `Attempt ${attempt} restarted the answer: the text of attempt ${view.attempt} was discarded.`);
    }
    view.shown = output;
    view.attempt = attempt;
  }

  async function fetchPages(view) {
    if (view.fetching) return;
    view.fetching = true;
    try {
      for (;;) {
        const d = view.latest;
        if (view.sealedAttempt !== (d[F.ATTEMPT] ?? 0) || view.sealedPages >= (d[F.OUTPUT_PAGES] ?? 0)) break;
        const id = String(view.sealedPages).padStart(6, "0");
        const page = (await getDoc(doc(db, EXECUTIONS, view.id, PAGES, id))).data();
        // A restart seals its own pages: wait for the document version that says so.
        if (!page || page.attempt !== view.sealedAttempt || page.start !== view.sealedChars) break;
        view.sealed += page.text;
        view.sealedPages += 1;
        view.sealedChars = page.end;
      }
    } catch (err) {
      fail($("error"), err, "cannot read the earlier part of the answer: ");
      return;
    } finally {
      view.fetching = false;
    }
    const d = view.latest;
    if (execution === view && view.sealedPages === (d[F.OUTPUT_PAGES] ?? 0)) {
      renderText(view, d);
      renderTokens(view, d);
    }
  }

  function renderReasoning(d) {
    const reasoning = (d[F.REASONING] ?? "") + (d[F.REASONING_TRUNCATED] ? "\n[… reasoning cut: it outgrew its limit]" : "");
    $("reasoning-box").hidden = !reasoning;
    if ($("reasoning").textContent !== reasoning) $("reasoning").textContent = reasoning;
  }

  function renderTokens(view, d) {
    const usage = d[F.USAGE];
    if (usage) {
      $("tokens").textContent = `${usage.completionTokens} completion tokens (exact, from usage)`;
      return;
    }
    const words = (view.shown.match(/\S+/g) ?? []).length;
    const chars = [...view.shown].length;
    $("tokens").textContent = LIVE.has(d[F.STATUS]) || d[F.STATUS] === "cancelled"
      ? `≈ ${plural(words, "word")} · ${plural(chars, "character")} arrived (approximate; exact token counts come with usage)`
      : `${plural(words, "word")} · ${plural(chars, "character")} received (no token counts reported)`;
  }

  function plural(n, word) {
    return `${n} ${word}${n === 1 ? "" : "s"}`;
  }

  function renderUsage(d) {
    const usage = d[F.USAGE];
    const status = d[F.STATUS];
    if (LIVE.has(status) || (!usage && d[F.COST] == null && status === "failed")) {
      $("usage").hidden = true;
      return;
    }
    const parts = [];
    if (usage) {
      let tokens = `Usage: ${usage.promptTokens} prompt + ${usage.completionTokens} completion = ${usage.totalTokens} tokens`;
      if (usage.reasoningTokens) tokens += ` (${usage.reasoningTokens} reasoning)`;
      parts.push(tokens);
    } else {
      parts.push(status === "cancelled" ? "Usage: not known yet (a stopped stream's usage is read from the upstream afterwards)" : "Usage: not reported");
    }
    const cost = d[F.COST];
    let costText = cost == null ? "Cost: not reported" : `Cost: $${formatUsd(cost)} USD`;
    if (cost != null && d[F.COST_SOURCE] === "generation") costText += " (from the upstream's generation record)";
    parts.push(costText);
    const usageEl = $("usage");
    usageEl.replaceChildren(document.createTextNode(parts[0] + " · "), Object.assign(document.createElement("span"), { id: "cost", textContent: parts[1] }));
    usageEl.hidden = false;
  }

  function formatUsd(value) {
    if (value === 0) return "0";
    return value >= 0.01 ? value.toFixed(4) : value.toPrecision(3);
  }

  function renderTimings(d) {
    const ms = (field) => d[field]?.toMillis?.() ?? null;
    const created = ms(F.CREATED_AT);
    const started = ms(F.STARTED_AT);
    const first = ms(F.FIRST_TOKEN_AT);
    const finished = ms(F.FINISHED_AT);
    const secs = (a, b) => `${((b - a) / 1000).toFixed(2)} s`;
    const parts = [];
    if (created && started) parts.push(`queued ${secs(created, started)}`);
    if (created && first) parts.push(`first token after ${secs(created, first)}`);
    if (created && finished) parts.push(`total ${secs(created, finished)}`);
    if (d[F.FINISH_REASON]) parts.push(`finish reason: ${d[F.FINISH_REASON]}`);
    show($("timings"), LIVE.has(d[F.STATUS]) || !parts.length ? "" : "Timings: " + parts.join(" · "));
  }

  function renderError(d) {
    const error = d[F.ERROR];
    if (!error) {
      $("error").hidden = true;
      return;
    }
    const upstream = error.upstreamStatus ? ` (upstream HTTP ${error.upstreamStatus})` : "";
    show($("error"), `${error.code}: ${error.message}${upstream}`);
  }
}
