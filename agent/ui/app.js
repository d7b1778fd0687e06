// The chat page's script: plain ES module, no framework, no build step.
//
// It is a client of the HTTP API like any other: every call goes to the app's own origin with
// the function key the user pasted (header `x-functions-key`). A run is followed through its
// event stream (`GET /api/runs/{id}/events`, Server-Sent Events) read with fetch(), because
// EventSource cannot send that header; a dropped stream resumes with `Last-Event-ID`. Where the
// stream is not served, the page polls `GET /api/runs/{id}` and the transcript instead.
//
// Nothing from the API is ever inserted as HTML: every text goes through textContent.

const API = new URL("..", import.meta.url); // this file is {prefix}/ui/app.js
const KEY_STORAGE = "agent-chat.function-key"; // sessionStorage: this tab only, gone when closed
const CONVERSATIONS_STORAGE = "agent-chat.conversations"; // localStorage: ids only, no content
const TERMINAL = new Set(["completed", "failed", "cancelled", "content_filtered", "budget_exceeded"]);
const BATCH_DONE = new Set([...TERMINAL, "rejected"]);
const POLL_MS = 600;
const BATCH_POLL_MS = 1500;
const RESULT_PREVIEW_CHARS = 1200;
const STREAM_RETRIES = 5;
const DEFAULT_RETRY_MS = 1000; // SSE's reconnection time until the stream says (`retry:`)
const APPROVAL_LOOKS = 10;
const STATUS_CHECK_MS = 5000;
const STATUS_TEXT = {
  pending: "Starting…",
  running: "Working…",
  waiting_for_approval: "Waiting for your approval",
  waiting_for_input: "Waiting for your answer",
  completed: "Done",
  failed: "The run failed",
  cancelled: "Cancelled",
  cancelling: "Cancelling…",
  content_filtered: "Stopped by the content filter",
  budget_exceeded: "Stopped: the token budget is used up",
};

const $ = (id) => document.getElementById(id);

const state = {
  conversationId: null,
  watch: null, // the run being followed: {runId, abort, streamed, transport}
  messages: [], // the open conversation's transcript, as the API last returned it
  batches: new Map(), // batch id -> timer
  pendingApprovals: [], // tool call ids the run asks the person about
  inputQuestion: null, // the question a tool's server asks the person (pending_input), shown
  answeredInputs: new Set(), // question ids this page answered (a status read just before may lag)
};

// --- the API ---------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function functionKey() {
  return sessionStorage.getItem(KEY_STORAGE) || "";
}

function headers(extra = {}) {
  const key = functionKey();
  return key ? { "x-functions-key": key, ...extra } : { ...extra };
}

async function call(method, path, body, signal) {
  const init = { method, headers: headers(), signal, credentials: "same-origin" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(new URL(path, API), init);
  const text = await response.text();
  const data = text ? parseJson(text) : null;
  if (!response.ok) throw new ApiError(response.status, problemDetail(response, data));
  return data;
}

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function problemDetail(response, data) {
  if (response.status === 401) {
    return "The API refused the call (401): paste a valid function key above.";
  }
  const detail = data && typeof data.detail === "string" ? data.detail : response.statusText;
  return `${detail} (${response.status})`;
}

// --- Server-Sent Events over fetch -------------------------------------------------------------

// Splits a text/event-stream into events: {id, type, data} (data parsed as JSON). Exported so
// the browser test can feed it chunks cut anywhere.
export function createEventParser() {
  let buffer = "";
  return function push(chunk) {
    buffer += chunk;
    const events = [];
    for (;;) {
      const match = /\r\n\r\n|\n\n|\r\r/.exec(buffer);
      if (!match) return events;
      const event = parseEventBlock(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
      if (event) events.push(event);
    }
  };
}

function parseEventBlock(block) {
  const event = { id: null, type: "message", data: null, retry: null };
  const data = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (!line || line.startsWith(":")) continue; // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") event.id = value;
    else if (field === "event") event.type = value;
    else if (field === "data") data.push(value);
    else if (field === "retry" && /^\d+$/.test(value)) event.retry = Number(value);
  }
  if (event.id === null && data.length === 0 && event.retry === null) return null;
  if (data.length) event.data = parseJson(data.join("\n"));
  return event;
}

async function* readEvents(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  const push = createEventParser();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    yield* push(value);
  }
}

// Follows a run's event stream to its end. True when the run finished on the stream (or the
// page stopped following it); false when no stream is served for it, or it keeps failing: the
// caller polls instead. A response that simply ends (a buffering host answers in slices, a
// streaming one ends after a few minutes) is followed by the next, from the last event seen.
async function streamRun(watch) {
  const cursor = { lastId: null, retryMs: DEFAULT_RETRY_MS };
  let failures = 0;
  while (!watch.abort.signal.aborted && failures <= STREAM_RETRIES) {
    const outcome = await readStreamOnce(watch, cursor);
    if (outcome === "finished") return true;
    if (outcome === "unavailable") return false;
    failures = outcome === "ended" ? 0 : failures + 1;
    await delay(outcome === "ended" ? cursor.retryMs : backoff(failures));
  }
  return watch.abort.signal.aborted;
}

// One response of the stream: "finished", "ended" (reconnect), "failed" or "unavailable".
async function readStreamOnce(watch, cursor) {
  let response;
  try {
    const extra = { accept: "text/event-stream" };
    if (cursor.lastId !== null) extra["last-event-id"] = cursor.lastId;
    response = await fetch(new URL(`runs/${watch.runId}/events`, API), {
      headers: headers(extra),
      signal: watch.abort.signal,
      credentials: "same-origin",
      cache: "no-store",
    });
  } catch {
    return "failed";
  }
  if (response.status === 204) return "unavailable"; // past the last event: the run's status tells
  const type = response.headers.get("content-type") || "";
  if (!response.ok || !type.startsWith("text/event-stream")) {
    return cursor.lastId === null ? "unavailable" : "failed";
  }
  startStreaming(watch);
  try {
    for await (const event of readEvents(response)) {
      if (event.retry !== null) cursor.retryMs = event.retry;
      if (event.id !== null) cursor.lastId = event.id;
      if (event.data && typeof event.data === "object" && (await onRunEvent(watch, event.data))) {
        return "finished";
      }
    }
  } catch {
    return watch.abort.signal.aborted ? "finished" : "failed";
  }
  return "ended";
}

function startStreaming(watch) {
  if (watch.transport === "events") return;
  watch.transport = "events";
  showTransport(watch);
  renderTranscript(state.messages); // the stream shows this run's messages from now on
}

function backoff(failures) {
  return Math.min(4000, 250 * 2 ** failures);
}

// --- following a run -----------------------------------------------------------------------------

async function followRun(runId) {
  stopWatching();
  const watch = { runId, abort: new AbortController(), streamed: "", transport: "polling" };
  state.watch = watch;
  clearLive();
  markPendingCalls(); // the run's calls without a result are running, not over
  setRunStatus("pending");
  $("cancel-run").hidden = false;
  checkWhileStreaming(watch); // runs beside the stream, ends with it
  const finished = await streamRun(watch);
  if (!finished && state.watch === watch) {
    watch.transport = "polling";
    showTransport(watch);
    await pollRun(watch);
  }
}

// While a stream is read, look at the run's status now and then: a run that ended without
// its last event (terminated, or a host that died for good) must not leave the page waiting.
async function checkWhileStreaming(watch) {
  while (state.watch === watch) {
    await delay(STATUS_CHECK_MS);
    if (state.watch !== watch || watch.transport !== "events") return;
    try {
      const view = await call("GET", `runs/${watch.runId}`, undefined, watch.abort.signal);
      if (!TERMINAL.has(view.status)) continue;
      await delay(STATUS_CHECK_MS); // give the stream the time to deliver its last event
      if (state.watch !== watch) return;
      watch.abort.abort();
      await finishRun(watch, view.status, view.answer, view.error);
    } catch {
      return; // aborted, or the API is away: the stream's own retries decide
    }
  }
}

function stopWatching() {
  if (state.watch) state.watch.abort.abort();
  state.watch = null;
}

function showTransport(watch) {
  $("run-status").dataset.transport = watch.transport;
}

// One event of the stream; true once the run has finished.
async function onRunEvent(watch, event) {
  switch (event.type) {
    case "run_started":
      setRunStatus("running");
      break;
    case "step_started":
      setRunStatus("running");
      break;
    case "text_delta":
      appendDelta(watch, event.step, String(event.delta ?? ""));
      break;
    case "text_reset": // a retried step writes its text again: drop what it streamed
      resetText(watch, event.step);
      break;
    case "step_failed":
      setRunStatus("running", "A model step failed; it is retried");
      break;
    case "tool_call_requested":
    case "tool_call_started":
    case "tool_call_completed":
    case "tool_call_failed":
      showLiveToolCall(event);
      break;
    case "approval_needed":
      await showApprovals(watch, APPROVAL_LOOKS);
      break;
    case "approval_decided":
      await showApprovals(watch, 1);
      break;
    case "input_requested":
      await showInput(watch, APPROVAL_LOOKS);
      break;
    case "input_answered":
      renderInput(watch, {});
      break;
    case "throttled":
      setRunStatus("running", throttledText(event));
      break;
    case "run_finished":
      await finishRun(watch, event.status, event.answer);
      return true;
    default:
      break; // a type this page does not know yet
  }
  return false;
}

function throttledText(event) {
  const seconds = event.wait ?? event.wait_seconds;
  return seconds ? `The model is busy: waiting ${Math.round(seconds)} s` : "The model is busy: waiting";
}

async function pollRun(watch) {
  let last = "";
  while (state.watch === watch && !watch.abort.signal.aborted) {
    let view;
    try {
      view = await call("GET", `runs/${watch.runId}`, undefined, watch.abort.signal);
    } catch (error) {
      if (watch.abort.signal.aborted) return;
      showError(error);
      if (error instanceof ApiError && error.status >= 400 && error.status < 500 && error.status !== 429) {
        return stopWatching(); // this run is not ours to see (or gone): asking again won't help
      }
      await delay(POLL_MS * 3);
      continue;
    }
    await refreshTranscript(); // tool calls and results appear as the run stores them
    if (TERMINAL.has(view.status)) {
      await finishRun(watch, view.status, view.answer, view.error);
      return;
    }
    setRunStatus(view.status, view.phase === "waiting_for_server" ? "Waiting for a tool server" : "");
    const asked = JSON.stringify([view.pending_approvals || [], view.pending_input?.question_id]);
    if (asked !== last) {
      last = asked;
      renderApprovals(watch, view);
      renderInput(watch, view);
    }
    await delay(POLL_MS);
  }
}

function delay(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function finishRun(watch, status, answer, error) {
  if (state.watch !== watch) return;
  state.watch = null;
  $("cancel-run").hidden = true;
  renderApprovals(watch, { pending_approvals: [] });
  renderInput(watch, {});
  await refreshTranscript({ render: "always" }); // with the run's own messages, now it is over
  clearLive();
  setRunStatus(status, error || "");
  // Streamed text was announced as it came; otherwise announce the answer once, now.
  if (!watch.streamed && answer) announce(answer);
}

// --- the live answer -------------------------------------------------------------------------------

function clearLive() {
  $("live").replaceChildren();
}

// One bubble per model step, created at its first text.
function appendDelta(watch, step, delta) {
  watch.streamed += delta;
  const key = String(step ?? "");
  let answer = [...$("live").querySelectorAll(".answer")].find((a) => a.dataset.step === key);
  if (!answer) {
    answer = element("div", "answer message assistant");
    answer.dataset.step = key;
    answer.append(element("span", "who", "Assistant"), element("span", "text"));
    $("live").append(answer);
  }
  answer.querySelector(".text").append(delta); // a text node: announced as it arrives
}

function resetText(watch, step) {
  const key = String(step ?? "");
  const answer = [...$("live").querySelectorAll(".answer")].find((a) => a.dataset.step === key);
  if (answer) answer.querySelector(".text").replaceChildren();
}

function showLiveToolCall(event) {
  const id = String(event.tool_call_id ?? event.id ?? "");
  let card = [...$("live").querySelectorAll(".tool-call")].find((c) => c.dataset.callId === id);
  if (!card) {
    card = toolCallCard(event.name, event.arguments, id);
    $("live").append(card);
  }
  if (event.type === "tool_call_requested" && event.needs_approval) {
    card.querySelector(".state").textContent = "Waiting for your approval.";
  }
  if (event.type === "tool_call_completed" || event.type === "tool_call_failed") {
    const failed = event.type === "tool_call_failed" || Boolean(event.is_error);
    setToolResult(card, resultText(event.result), failed, event.truncated);
  }
}

function announce(text) {
  const note = element("p", "visually-hidden", text);
  $("live").append(note);
}

// --- the transcript -----------------------------------------------------------------------------

// render: "changed" (when the messages changed), "always", or "never" (only load them).
async function refreshTranscript({ render = "changed" } = {}) {
  if (!state.conversationId) return;
  const conversationId = state.conversationId;
  const conversation = await call("GET", `conversations/${conversationId}`);
  if (state.conversationId !== conversationId) return;
  const changed = JSON.stringify(conversation.messages) !== JSON.stringify(state.messages);
  state.messages = conversation.messages;
  if (render === "always" || (changed && render === "changed")) renderTranscript(state.messages);
  return conversation;
}

function renderTranscript(messages) {
  const results = new Map(
    messages.filter((m) => m.role === "tool").map((m) => [m.tool_call_id, m]),
  );
  const items = [];
  for (const message of messages) {
    if (message.role === "tool" && hasCall(messages, message.tool_call_id)) continue;
    if (streamedElsewhere(message)) continue;
    items.push(messageItem(message, results));
  }
  $("transcript").replaceChildren(...items);
  markPendingCalls();
}

// A message of the run being streamed: the live area shows it (once), not the transcript.
function streamedElsewhere(message) {
  const watch = state.watch;
  return Boolean(
    watch && watch.transport === "events" && message.role !== "user" && message.run_id === watch.runId,
  );
}

// Tool calls still without a result say why: waiting for the person, or never run.
function markPendingCalls() {
  const pending = new Set(state.pendingApprovals);
  for (const card of document.querySelectorAll(".tool-call:not(.answered)")) {
    const waiting = pending.has(card.dataset.callId);
    const ended = !state.watch;
    const text = waiting ? "Waiting for your approval." : ended ? "No result." : "Running…";
    if (!card.closest("#approvals")) card.querySelector(".state").textContent = text;
  }
}

function hasCall(messages, callId) {
  return messages.some((m) => (m.tool_calls || []).some((c) => c.id === callId));
}

function messageItem(message, results) {
  const item = element("li", `message ${message.role}`);
  item.append(element("span", "who", speaker(message)));
  if (message.content) item.append(element("div", "text", message.content));
  for (const toolCall of message.tool_calls || []) {
    const card = toolCallCard(toolCall.name, toolCall.arguments, toolCall.id);
    const result = results.get(toolCall.id);
    if (result) setToolResult(card, result.content, result.is_error, result.truncated);
    item.append(card);
  }
  return item;
}

function speaker(message) {
  if (message.role === "user") return message.origin ? `You (${message.origin})` : "You";
  if (message.role === "tool") return `Tool result: ${message.name}`;
  return "Assistant";
}

function toolCallCard(name, args, id) {
  const card = element("div", "tool-call");
  card.dataset.callId = id || "";
  card.append(
    element("div", "name", `Tool call: ${name}`),
    element("pre", "arguments", prettyArguments(args)),
    element("div", "state", "Running…"),
  );
  return card;
}

function setToolResult(card, text, isError, truncated) {
  const shown = String(text ?? "");
  const preview = shown.length > RESULT_PREVIEW_CHARS ? `${shown.slice(0, RESULT_PREVIEW_CHARS)}…` : shown;
  card.classList.toggle("failed", Boolean(isError));
  card.classList.add("answered");
  const note = truncated || preview !== shown ? " (truncated; the full output is stored)" : "";
  card.querySelector(".state").textContent = `${isError ? "Failed" : "Result"}${note}:`;
  let result = card.querySelector(".result");
  if (!result) {
    result = element("pre", "result");
    card.append(result);
  }
  result.textContent = preview;
}

function prettyArguments(args) {
  if (typeof args !== "string") return JSON.stringify(args ?? {}, null, 2);
  const parsed = parseJson(args);
  return parsed === null ? args : JSON.stringify(parsed, null, 2);
}

function resultText(result) {
  if (result === undefined || result === null) return "";
  return typeof result === "string" ? result : JSON.stringify(result, null, 2);
}

// --- approvals ----------------------------------------------------------------------------------

// The run's current question, read from its status: an event stream's approval event may be
// written a moment before the run's status says it waits, so look a few times.
async function showApprovals(watch, looks) {
  try {
    let view = await call("GET", `runs/${watch.runId}`, undefined, watch.abort.signal);
    for (let look = 1; look < looks && ["pending", "running"].includes(view.status); look += 1) {
      await delay(POLL_MS);
      view = await call("GET", `runs/${watch.runId}`, undefined, watch.abort.signal);
    }
    await refreshTranscript({ render: "never" }); // the proposed calls, with their arguments
    if (view.status === "waiting_for_approval") setRunStatus(view.status);
    renderApprovals(watch, view);
  } catch (error) {
    if (!watch.abort.signal.aborted) showError(error);
  }
}

function renderApprovals(watch, view) {
  const pending = view.pending_approvals || [];
  state.pendingApprovals = pending;
  markPendingCalls();
  const interrupted = new Set(view.interrupted_calls || []);
  const items = pending.map((callId) => approvalItem(watch, view, callId, interrupted.has(callId)));
  $("approval-list").replaceChildren(...items);
  $("approvals").hidden = items.length === 0;
}

function approvalItem(watch, view, callId, interrupted) {
  const proposed = findCall(callId);
  const item = element("li", "approval");
  const name = proposed ? proposed.name : callId;
  const card = toolCallCard(name, proposed ? proposed.arguments : "{}", callId);
  card.querySelector(".state").textContent = interrupted
    ? "Cut off by a crash: its outcome is unknown. Call it again?"
    : "Needs your approval before it runs.";
  const actions = element("div", "actions");
  const approve = element("button", "approve", `Approve ${name}`);
  const reject = element("button", "reject", `Reject ${name}`);
  approve.type = reject.type = "button";
  approve.addEventListener("click", () => answerApproval(watch, view, callId, true, item));
  reject.addEventListener("click", () => answerApproval(watch, view, callId, false, item));
  actions.append(approve, reject);
  item.append(card, actions);
  return item;
}

function findCall(callId) {
  for (const message of state.messages) {
    const found = (message.tool_calls || []).find((c) => c.id === callId);
    if (found) return found;
  }
  return null;
}

async function answerApproval(watch, view, callId, approved, item) {
  for (const button of item.querySelectorAll("button")) button.disabled = true;
  const body = { tool_call_id: callId, approved };
  if (view.question_id) body.question_id = view.question_id;
  try {
    await call("POST", `runs/${watch.runId}/approvals`, body);
    item.remove();
    $("approvals").hidden = $("approval-list").children.length === 0;
    setRunStatus("running", approved ? "Approved" : "Rejected");
    $("message").focus(); // the answered prompt is gone: put focus somewhere useful
  } catch (error) {
    showError(error);
    for (const button of item.querySelectorAll("button")) button.disabled = false;
  }
}

// --- questions from a tool (MCP elicitation) ------------------------------------------------------

// The question, read from the run's status (as approvals are: the event may come a moment first).
async function showInput(watch, looks) {
  try {
    let view = await call("GET", `runs/${watch.runId}`, undefined, watch.abort.signal);
    for (let look = 1; look < looks && !view.pending_input && !TERMINAL.has(view.status); look += 1) {
      await delay(POLL_MS);
      view = await call("GET", `runs/${watch.runId}`, undefined, watch.abort.signal);
    }
    if (view.status === "waiting_for_input") setRunStatus(view.status);
    renderInput(watch, view);
  } catch (error) {
    if (!watch.abort.signal.aborted) showError(error);
  }
}

// A form from the question's requested schema (flat: text, number, yes/no and choice fields).
function renderInput(watch, view) {
  let question = view.pending_input || null;
  if (question && state.answeredInputs.has(question.question_id)) question = null;
  if (question?.question_id === state.inputQuestion?.question_id) return; // already shown
  state.inputQuestion = question;
  $("input-request").hidden = !question;
  if (!question) return $("input-fields").replaceChildren();
  $("input-message").textContent = question.message; // the server's words, as text only
  const schema = question.requested_schema || {};
  const required = new Set(schema.required || []);
  const fields = Object.entries(schema.properties || {}).map(([name, prop]) =>
    inputField(name, prop, required.has(name)),
  );
  $("input-fields").replaceChildren(...fields);
  $("input-form").onsubmit = (event) => {
    event.preventDefault();
    answerInput(watch, question, "accept");
  };
  $("input-decline").onclick = () => answerInput(watch, question, "decline");
  $("input-cancel").onclick = () => answerInput(watch, question, "cancel");
}

function inputField(name, prop, required) {
  const id = `input-field-${name}`;
  const label = element("label", "", `${prop.title || name}${required ? " (required)" : ""}`);
  const choices = fieldChoices(prop.type === "array" ? prop.items : prop);
  if (prop.type === "array") return choiceBoxes(name, prop, choices, label);
  let control;
  if (choices) {
    control = element("select");
    if (!required) control.append(element("option", "", ""));
    for (const choice of choices) {
      const option = element("option", "", choice.title);
      option.value = choice.value;
      control.append(option);
    }
    if (prop.default !== undefined) control.value = String(prop.default);
  } else {
    control = element("input");
    control.type = fieldType(prop);
    if (prop.type === "boolean") control.checked = prop.default === true;
    else if (prop.default !== undefined) control.value = String(prop.default);
    if (prop.type === "integer") control.step = "1";
    if (prop.type === "number") control.step = "any";
  }
  control.id = id;
  control.name = name;
  control.dataset.kind = choices ? "choice" : prop.type;
  if (prop.description) control.title = prop.description;
  label.htmlFor = id;
  const wrapper = element("div", "field");
  wrapper.append(label, control);
  return wrapper;
}

function fieldType(prop) {
  if (prop.type === "boolean") return "checkbox";
  if (prop.type === "number" || prop.type === "integer") return "number";
  return { email: "email", uri: "url", date: "date" }[prop.format] || "text";
}

function fieldChoices(prop) {
  if (!prop) return null;
  if (Array.isArray(prop.enum)) {
    const titles = prop.enumNames || [];
    return prop.enum.map((value, i) => ({ value: String(value), title: titles[i] || String(value) }));
  }
  const options = prop.oneOf || prop.anyOf;
  if (!Array.isArray(options)) return null;
  return options.map((o) => ({ value: String(o.const), title: o.title || String(o.const) }));
}

function choiceBoxes(name, prop, choices, label) {
  const set = element("fieldset");
  set.dataset.name = name;
  set.append(element("legend", "", label.textContent));
  for (const choice of choices || []) {
    const box = element("input");
    box.type = "checkbox";
    box.value = choice.value;
    box.id = `input-field-${name}-${choice.value}`;
    const boxLabel = element("label", "", choice.title);
    boxLabel.htmlFor = box.id;
    boxLabel.prepend(box);
    set.append(boxLabel);
  }
  return set;
}

// The form's values as the schema types them; empty optional fields are left out.
function inputContent() {
  const content = {};
  for (const control of $("input-fields").querySelectorAll("input[name], select[name]")) {
    const kind = control.dataset.kind;
    if (kind === "boolean") content[control.name] = control.checked;
    else if (control.value === "") continue;
    else if (kind === "number" || kind === "integer") content[control.name] = Number(control.value);
    else content[control.name] = control.value;
  }
  for (const set of $("input-fields").querySelectorAll("fieldset[data-name]")) {
    const picked = [...set.querySelectorAll("input:checked")].map((box) => box.value);
    if (picked.length) content[set.dataset.name] = picked;
  }
  return content;
}

async function answerInput(watch, question, action) {
  const buttons = $("input-form").querySelectorAll("button");
  for (const button of buttons) button.disabled = true;
  const body = { action, question_id: question.question_id };
  if (action === "accept") body.content = inputContent();
  try {
    await call("POST", `runs/${watch.runId}/input`, body);
    state.answeredInputs.add(question.question_id);
    renderInput(watch, {});
    setRunStatus("running", { accept: "Answered", decline: "Declined", cancel: "Cancelled the question" }[action]);
    $("message").focus(); // the answered form is gone: put focus somewhere useful
  } catch (error) {
    showError(error); // e.g. a field that does not fit: the form stays for another try
  } finally {
    for (const button of buttons) button.disabled = false;
  }
}

// --- conversations ------------------------------------------------------------------------------

function knownConversations() {
  const ids = parseJson(localStorage.getItem(CONVERSATIONS_STORAGE) || "[]");
  return Array.isArray(ids) ? ids.filter((id) => typeof id === "string") : [];
}

function rememberConversation(id) {
  const ids = [id, ...knownConversations().filter((known) => known !== id)].slice(0, 50);
  localStorage.setItem(CONVERSATIONS_STORAGE, JSON.stringify(ids));
}

// The caller's conversations from the API where it lists them, else those this browser made.
async function listConversations() {
  try {
    const listed = await call("GET", "conversations");
    const items = Array.isArray(listed) ? listed : listed?.items || listed?.conversations;
    if (Array.isArray(items)) return items.map((c) => (typeof c === "string" ? c : c.id));
  } catch {
    // not served here (405/404) or not allowed: fall back to this browser's list
  }
  return knownConversations();
}

async function renderConversationList() {
  const ids = await listConversations();
  const items = ids.map((id) => {
    const button = element("button", "", `Conversation ${id.slice(0, 8)}`);
    button.type = "button";
    button.dataset.conversationId = id;
    button.setAttribute("aria-label", `Conversation ${id}`);
    if (id === state.conversationId) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => openConversation(id));
    const item = element("li");
    item.append(button);
    return item;
  });
  $("conversation-list").replaceChildren(...items);
  $("no-conversations").hidden = items.length > 0;
}

async function newConversation() {
  const created = await call("POST", "conversations", {});
  rememberConversation(created.id);
  await openConversation(created.id);
  return created.id;
}

async function startConversation() {
  await newConversation();
  $("message").focus(); // what comes next is writing the first message
}

async function openConversation(id) {
  stopWatching();
  state.conversationId = id;
  state.messages = [];
  clearLive();
  renderApprovals({}, { pending_approvals: [] });
  renderInput({}, {});
  $("transcript").replaceChildren();
  $("chat-title").textContent = `Conversation ${id}`;
  setRunStatus(null);
  $("cancel-run").hidden = true;
  await renderConversationList();
  const conversation = await refreshTranscript();
  if (conversation?.active_run_id) followRun(conversation.active_run_id).catch(showError);
}

// --- sending, cancelling, scheduling -------------------------------------------------------

async function send(event) {
  event?.preventDefault();
  const box = $("message");
  const content = box.value.trim();
  if (!content) {
    box.focus();
    return;
  }
  $("send").disabled = true;
  try {
    const conversationId = state.conversationId || (await newConversation());
    const started = await call("POST", `conversations/${conversationId}/messages`, { content });
    box.value = "";
    await refreshTranscript(); // the message just sent
    followRun(started.run_id).catch(showError);
  } finally {
    $("send").disabled = false;
  }
}

async function cancelRun() {
  const watch = state.watch;
  if (!watch) return;
  const answer = await call("POST", `runs/${watch.runId}/cancel`);
  if (answer.status === "cancelled") await finishRun(watch, "cancelled");
  else setRunStatus(answer.status); // "cancelling": the run's status or stream says when it ends
}

async function schedule(event) {
  event.preventDefault();
  const content = $("schedule-message").value.trim();
  const when = new Date($("schedule-time").value); // local time, as the input shows it
  if (!content || Number.isNaN(when.getTime())) throw new ApiError(0, "Write a message and pick a time.");
  const conversationId = state.conversationId || (await newConversation());
  const item = { content, scheduled_time: when.toISOString(), conversation_id: conversationId };
  const batch = await call("POST", "schedules", { items: [item] });
  $("schedule-message").value = "";
  renderBatch(batch);
  watchBatch(batch.batch_id);
}

function watchBatch(batchId) {
  clearTimeout(state.batches.get(batchId));
  const tick = async () => {
    try {
      const batch = await call("GET", `batches/${batchId}`);
      renderBatch(batch);
      followDelivered(batch);
      if (batch.items.every((item) => BATCH_DONE.has(item.status))) {
        state.batches.delete(batchId);
        if (batch.items.some((item) => item.conversation_id === state.conversationId)) {
          await refreshTranscript();
        }
        return;
      }
    } catch (error) {
      showError(error);
    }
    state.batches.set(batchId, setTimeout(tick, BATCH_POLL_MS));
  };
  state.batches.set(batchId, setTimeout(tick, BATCH_POLL_MS));
}

// A scheduled message delivered into the open conversation: follow its run like a sent one.
function followDelivered(batch) {
  if (state.watch) return;
  const delivered = batch.items.find(
    (item) => item.conversation_id === state.conversationId && item.run_id && !BATCH_DONE.has(item.status),
  );
  if (delivered) followRun(delivered.run_id).catch(showError);
}

function renderBatch(batch) {
  const id = `batch-${batch.batch_id}`;
  const item = element("li", "batch");
  item.id = id;
  const counts = Object.entries(batch.counts || {}).map(([status, n]) => `${n} ${status}`);
  item.append(element("div", "", `Batch ${batch.batch_id}: ${counts.join(", ")}`));
  for (const entry of batch.items) {
    const when = new Date(entry.scheduled_time).toLocaleString();
    const line = `${when}: ${entry.status}${entry.error ? ` (${entry.error})` : ""}`;
    item.append(element("div", "hint", line));
    if (entry.answer) item.append(element("div", "text", entry.answer));
  }
  const existing = document.getElementById(id);
  if (existing) existing.replaceWith(item);
  else $("batch-list").prepend(item);
}

// --- status, errors, small helpers ---------------------------------------------------------

function setRunStatus(status, extra = "") {
  const text = status ? STATUS_TEXT[status] || status : "";
  $("run-status").textContent = [text, extra].filter(Boolean).join(". ");
  $("run-status").dataset.status = status || "";
}

function showError(error) {
  const box = $("error");
  box.textContent = error instanceof Error ? error.message : String(error);
  box.hidden = false;
  if (error instanceof ApiError && error.status === 401) $("key").focus();
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function element(tag, className = "", text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// Every user action: clear the last error, show the next one.
function action(handler) {
  return async (event) => {
    clearError();
    try {
      await handler(event);
    } catch (error) {
      showError(error);
    }
  };
}

async function checkHealth() {
  const health = $("health");
  try {
    await call("GET", "health");
    health.textContent = "The app is up.";
    health.classList.remove("bad");
  } catch (error) {
    health.textContent = `The app is not ready: ${error.message}`;
    health.classList.add("bad");
  }
}

function useKey(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
  $("key").value = "";
  $("key-hint").dataset.saved = key ? "yes" : "no";
  $("key").placeholder = key ? "A key is set for this tab" : "";
  return renderConversationList();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  $("key").placeholder = "";
}

function sendOnCtrlEnter(event) {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    $("message-form").requestSubmit();
  }
}

function start() {
  $("key-form").addEventListener("submit", action(useKey));
  $("forget-key").addEventListener("click", action(forgetKey));
  $("new-conversation").addEventListener("click", action(startConversation));
  $("message-form").addEventListener("submit", action(send));
  $("message").addEventListener("keydown", sendOnCtrlEnter);
  $("cancel-run").addEventListener("click", action(cancelRun));
  $("schedule-form").addEventListener("submit", action(schedule));
  if (functionKey()) $("key").placeholder = "A key is set for this tab";
  document.body.dataset.ready = "true";
  checkHealth();
  action(renderConversationList)();
}

start();
