// Prompt templates: users/{uid}/prompts/{id} = {content}, with `{name}` placeholders.

import { PROMPTS, Start, TEMPLATE_CONTENT, TEMPLATE_COUNT, TEMPLATE_LAST, USERS } from "@promptq/web/schema";
import { collection, doc, increment, onSnapshot, runTransaction, writeBatch } from "firebase/firestore";
import { $, describe, fail } from "./dom.js";

// `{name}` placeholders; `{{` and `}}` are literal braces (promptq/contract/requests/request.py, _TOKEN).
const PLACEHOLDER = /\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}/g;

const variableValues = {};  // typed values by placeholder name, kept across re-renders
let templates = new Map();  // id -> content, of the signed-in user

/**
 * The placeholder names of a template, in order of first use.
 * @param {string} content
 * @returns {string[]}
 */
export function placeholders(content) {
  const names = [];
  for (const m of content.matchAll(PLACEHOLDER)) {
    if (m[1] && !names.includes(m[1])) names.push(m[1]);
  }
  return names;
}

/**
 * The request fields for the chosen template: its id and the variables typed in.
 * @returns {{[key: string]: string | Object<string, string>}}
 */
export function templateRequest() {
  const variables = {};
  for (const input of $("variables").querySelectorAll("input")) variables[input.dataset.name] = input.value;
  return { [Start.PROMPT_ID]: $("template").value, [Start.VARIABLES]: variables };
}

/**
 * Save or delete a template. The rules cap a user's templates: a create or a delete moves
 * users/{uid}'s count by one, naming the template, in the same write (infra/firestore.rules).
 * @param {import("firebase/firestore").Firestore} db
 * @param {string} uid
 */
function templateWrites(db, uid) {
  const templateDoc = (id) => doc(db, USERS, uid, PROMPTS, id);
  const counted = (id, by) => [doc(db, USERS, uid), { [TEMPLATE_COUNT]: increment(by), [TEMPLATE_LAST]: id }, { merge: true }];
  return {
    save: (id, content) => runTransaction(db, async (tx) => {
      const exists = (await tx.get(templateDoc(id))).exists();
      tx.set(templateDoc(id), { [TEMPLATE_CONTENT]: content });
      if (!exists) tx.set(...counted(id, 1));
    }),
    remove: (id) => writeBatch(db).delete(templateDoc(id)).set(...counted(id, -1)).commit(),
  };
}

/**
 * Wire the template controls; returns `watch(uid)`, which follows that user's templates
 * and returns its unsubscribe function.
 * @param {import("firebase/firestore").Firestore} db
 * @param {import("firebase/auth").Auth} auth
 * @returns {(uid: string) => () => void}
 */
export function setupTemplates(db, auth) {
  const writes = () => templateWrites(db, auth.currentUser.uid);

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
      await writes().save(id, $("template-text").value);
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
      await writes().remove(id);
      $("template-message").textContent = `Deleted template “${id}”.`;
    } catch (err) {
      fail($("call-error"), err, "delete: ");
    }
  });

  return (uid) => onSnapshot(collection(db, USERS, uid, PROMPTS), (snap) => {
    templates = new Map(snap.docs.map((d) => [d.id, d.data()[TEMPLATE_CONTENT] ?? ""]));
    const select = $("template");
    const keep = select.value;
    select.replaceChildren(...[...templates.keys()].map((id) => new Option(id, id)));
    if (templates.has(keep)) select.value = keep;
    $("no-templates").hidden = templates.size > 0;
    renderTemplate();
  }, (err) => fail($("call-error"), err, "templates: "));
}

// The chosen template's text, and one input per placeholder.
function renderTemplate() {
  const id = $("template").value;
  const content = templates.get(id) ?? "";
  $("template-content").textContent = content;
  $("template-content").hidden = !id;
  $("delete-template").disabled = !id;
  $("variables").replaceChildren(...placeholders(content).map((name) => {
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
