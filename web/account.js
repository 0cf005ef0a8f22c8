// The signed-in user's account: today's spend against their budget (live), their own
// OpenRouter key (set / delete; only its label is ever shown), their signed webhooks' endpoints
// (listed; never a secret), and their last 20 executions (live; a click follows one).

import { getUsage, listWebhookEndpoints } from "@promptq/web";
import { Callable, DAYS, EXECUTIONS, ExecutionField, USAGE, DayField } from "@promptq/web/schema";
import { collection, doc, limit, onSnapshot, orderBy, query, where } from "firebase/firestore";
import { httpsCallable } from "firebase/functions";
import { $, fail, show } from "./dom.js";

const HISTORY = 20;

/** "$0.000123" (no trailing zeros), "$0" */
export function usd(value) {
  if (value == null) return "unknown";
  return value ? `$${value.toFixed(6).replace(/0+$/, "").replace(/\.$/, "")}` : "$0";
}

/** Today's UTC day, as usage documents are named. */
const today = () => new Date().toISOString().slice(0, 10);

/** Today's spend against the budget (`limits` from get_usage; `spent`: the usage day, live). */
function renderSpend({ limits, spent }) {
  if (!spent) return show($("spend"), "Today: nothing spent yet.");
  const budget = limits.dailyBudgetUsd;
  show($("spend"), `Today: ${usd(spent[DayField.COST] ?? 0)}` + (budget ? ` of your ${usd(budget)} daily budget` : " (no daily budget)")
    + ` · ${spent[DayField.EXECUTIONS] ?? 0} executions on the app's key`
    + (spent[DayField.USER_KEY_EXECUTIONS] ? `, ${spent[DayField.USER_KEY_EXECUTIONS]} on your own (${usd(spent[DayField.USER_KEY_COST])})` : ""));
  const bar = $("budget-bar");
  bar.hidden = !budget;
  if (budget) bar.value = Math.min(1, (spent[DayField.COST] ?? 0) / budget);
}

/** The key's label, limit and usage (get_api_key / set_api_key / delete_api_key's answer). */
function renderKey(answer) {
  $("delete-key").hidden = !answer.hasKey;
  if (!answer.hasKey) return show($("key-status"), "No key of your own: your executions run on the app's key.");
  const limit = answer.limit != null ? `limit ${usd(answer.limit)}, ${usd(answer.limitRemaining)} left` : "no credit limit";
  show($("key-status"), `Your key ${answer.label} serves your executions (${limit}, used ${usd(answer.usage)}).`);
}

/** The endpoints' URLs, events and state (a disabled one says why). */
function renderWebhooks({ endpoints }) {
  const rows = endpoints.map((e) => {
    const li = document.createElement("li");
    const state = e.disabled ? `disabled (${e.disabled})` : e.failures ? `failing (${e.failures} in a row)` : "ok";
    li.textContent = `${e.url} · ${e.events.join(", ")}${e.batchItems ? ", batch items" : ""} · ${state}`;
    li.dataset.endpointId = e.endpointId;
    return li;
  });
  $("webhooks").replaceChildren(...rows);
  $("no-webhooks").hidden = rows.length > 0;
}

/** Save and Delete of one's own key: the field is emptied as soon as the key is stored. */
function wireKey(call) {
  const attempt = async (promise) => {
    $("key-error").hidden = true;
    try {
      renderKey((await promise).data);
      return true;
    } catch (err) {
      fail($("key-error"), err);
      return false;
    }
  };
  $("key-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (await attempt(call(Callable.SET_API_KEY)({ apiKey: $("api-key").value.trim() }))) $("api-key").value = "";
  });
  $("delete-key").addEventListener("click", () => attempt(call(Callable.DELETE_API_KEY)({})));
}

/**
 * Wire the account card and the history list; returns `watch(uid)`, which starts the live parts
 * for a user and returns their unsubscribe.
 * @param {import("firebase/firestore").Firestore} db
 * @param {import("firebase/functions").Functions} functions
 */
export function setupAccount(db, functions) {
  const call = (name) => httpsCallable(functions, name);
  const state = { limits: { dailyBudgetUsd: 0 }, spent: null };
  wireKey(call);
  const refresh = () => Promise.all([getUsage(functions, { days: 1 }), call(Callable.GET_API_KEY)({})])
    .then(([usage, key]) => {
      state.limits = usage.limits;
      renderSpend(state);
      renderKey(key.data);
    }, (err) => fail($("key-error"), err))
    .then(() => listWebhookEndpoints(functions).then(renderWebhooks, () => renderWebhooks({ endpoints: [] })));

  return (uid) => {
    $("account-section").hidden = $("history-section").hidden = false;
    state.spent = null;
    renderSpend(state);
    refresh();
    const stopSpend = onSnapshot(doc(db, USAGE, uid, DAYS, today()), (snap) => {
      state.spent = snap.exists() ? snap.data() : null;
      renderSpend(state);
    }, (err) => fail($("key-error"), err));
    const mine = query(collection(db, EXECUTIONS), where(ExecutionField.OWNER, "==", uid), orderBy(ExecutionField.CREATED_AT, "desc"), limit(HISTORY));
    const stopHistory = onSnapshot(mine, (snaps) => renderHistory(snaps.docs), (err) => fail($("history-error"), err));
    return () => {
      stopSpend();
      stopHistory();
      $("account-section").hidden = $("history-section").hidden = true;
    };
  };
}

function renderHistory(docs) {
  const rows = docs.map((snap) => {
    const d = snap.data();
    const li = document.createElement("li");
    const a = document.createElement("a");
    a.href = `#/executions/${snap.id}`;
    a.dataset.executionId = snap.id;
    const status = document.createElement("span");
    status.className = "status";
    status.dataset.status = d[ExecutionField.STATUS];
    status.textContent = d[ExecutionField.STATUS];
    const model = document.createElement("span");
    model.className = "model";
    model.textContent = d[ExecutionField.MODEL] ?? d[ExecutionField.REQUESTED_MODEL] ?? "";
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = d[ExecutionField.TITLE] ?? "";
    const cost = document.createElement("span");
    cost.className = "cost";
    cost.textContent = d[ExecutionField.COST] != null ? usd(d[ExecutionField.COST]) : "";
    a.append(status, model, title, cost);
    li.append(a);
    return li;
  });
  $("history").replaceChildren(...rows);
  $("no-history").hidden = rows.length > 0;
}
