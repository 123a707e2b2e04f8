// The h2o-chat web page: chat-ui's 2023 protocol from the browser, no build step.
// Questions are shown as text; answers as Markdown made safe by markdown.js; titles as text.

import { postSettings, request, requestJson, streamAnswer } from "./api.js";
import { element, MessageList } from "./messages.js";
import { Options } from "./options.js";
import { Drawer, Sidebar } from "./sidebar.js";

const $ = (id) => document.getElementById(id);
const els = {
  menu: $("menu"),
  closeDrawer: $("close-drawer"),
  model: $("model"),
  newChat: $("new-chat"),
  sidebar: $("sidebar"),
  backdrop: $("backdrop"),
  pane: $("pane"),
  chat: $("chat"),
  title: $("chat-title"),
  info: $("chat-info"),
  empty: $("empty"),
  messages: $("messages"),
  status: $("status"),
  editing: $("editing"),
  cancelEdit: $("cancel-edit"),
  form: $("ask"),
  system: $("system"),
  temperature: $("temperature"),
  maxNewTokens: $("max-new-tokens"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
};

const OPEN_CONVERSATION = "h2o-chat.conversation"; // sessionStorage: this tab's conversation
const NEW_CHAT = "New chat";

const state = {
  conversationId: null, // created on the first send of a chat
  model: null, // the open conversation's model and system prompt
  preprompt: null,
  generating: null, // {controller, stopped} while an answer streams
  editing: null, // the question being edited
  needsTitle: false, // a conversation this page created, not yet summarized
};

const options = new Options(els.temperature, els.maxNewTokens);
const view = new MessageList(els.messages, els.chat, els.empty, {
  edit: (message) => startEdit(message),
  retry: () => retry(),
});
const drawer = new Drawer(els.sidebar, els.menu, els.closeDrawer, els.backdrop, els.pane);
const sidebar = new Sidebar($("conversations"), $("no-conversations"), {
  open: (id) => openConversation(id),
  rename: (id, title) => renameConversation(id, title),
  remove: (id) => deleteConversation(id),
});

// --- small helpers ------------------------------------------------------------------------

function showStatus(text) {
  els.status.textContent = text;
}

function author(role) {
  return role === "user" ? "You" : state.model || els.model.value || "Assistant";
}

function refreshActions() {
  view.refreshActions(Boolean(state.generating) || Boolean(state.editing));
}

// One line under the title: the model, the sampling and the system prompt the chat uses.
function showInfo() {
  const parts = [state.model || els.model.value, options.describe()];
  const system = state.conversationId ? state.preprompt : els.system.value.trim();
  if (system) {
    const short = system.length > 80 ? `${system.slice(0, 79)}\u2026` : system;
    parts.push(`system prompt: \u201c${short}\u201d`);
  }
  els.info.textContent = parts.join(" \u00b7 ");
}

// --- conversations ---------------------------------------------------------------------------

function setGenerating(generating) {
  state.generating = generating;
  els.send.hidden = Boolean(generating);
  els.stop.hidden = !generating;
  els.model.disabled = Boolean(generating);
  els.newChat.disabled = Boolean(generating);
  sidebar.setDisabled(Boolean(generating));
  refreshActions();
  if (!generating) els.prompt.focus();
}

function showTitle() {
  const title = state.conversationId && sidebar.titleOf(state.conversationId);
  els.title.textContent = title || (state.conversationId ? els.title.textContent : NEW_CHAT);
}

async function refreshConversations() {
  try {
    sidebar.show(await requestJson("GET", "/conversations"));
    sidebar.select(state.conversationId);
    showTitle();
  } catch (error) {
    showStatus(`Could not list the conversations: ${error.message}`);
  }
}

function clearChat() {
  cancelEdit();
  state.conversationId = null;
  state.model = null;
  state.preprompt = null;
  state.needsTitle = false;
  sessionStorage.removeItem(OPEN_CONVERSATION);
  view.clear();
  els.system.readOnly = false;
  sidebar.select(null);
  showTitle();
  showInfo();
  showStatus("");
}

function showConversation(conversation) {
  clearChat();
  state.conversationId = conversation.id;
  state.model = conversation.model;
  state.preprompt = conversation.preprompt;
  sessionStorage.setItem(OPEN_CONVERSATION, conversation.id);
  if ([...els.model.options].some((option) => option.value === conversation.model)) {
    els.model.value = conversation.model;
  }
  els.system.value = conversation.preprompt || "";
  els.system.readOnly = true;
  options.restore(conversation.id);
  for (const message of conversation.messages || []) {
    if (message.role === "user" || message.role === "assistant") {
      view.add(message.role, message.content, message.id, author(message.role));
    }
  }
  els.title.textContent = conversation.title || NEW_CHAT;
  sidebar.select(conversation.id);
  showInfo();
  refreshActions();
}

async function openConversation(id) {
  if (state.generating) return;
  try {
    showConversation(await requestJson("GET", `/conversation/${id}`));
    drawer.close(false);
    els.prompt.focus();
  } catch (error) {
    showStatus(`Could not open the conversation: ${error.message}`);
    await refreshConversations();
  }
}

async function renameConversation(id, title) {
  try {
    await request("PATCH", `/conversation/${id}`, { title });
  } catch (error) {
    showStatus(`Could not rename: ${error.message}`);
  }
  await refreshConversations();
}

async function deleteConversation(id) {
  try {
    await request("DELETE", `/conversation/${id}`);
    options.forget(id);
    if (id === state.conversationId) clearChat();
  } catch (error) {
    showStatus(`Could not delete: ${error.message}`);
  }
  await refreshConversations();
  (sidebar.list.querySelector(".open") || els.prompt).focus();
}

// chat-ui's title: the model summarizes the first question, in the background.
async function summarize(id) {
  try {
    await request("POST", `/conversation/${id}/summarize`);
  } catch {
    return; // the list keeps showing the start of the first question
  }
  await refreshConversations();
}

async function ensureConversation() {
  if (state.conversationId) return state.conversationId;
  const body = { model: els.model.value };
  const system = els.system.value.trim();
  if (system) body.preprompt = system;
  const { conversationId } = await requestJson("POST", "/conversation", body);
  state.conversationId = conversationId;
  state.model = body.model;
  state.preprompt = system || null;
  state.needsTitle = true;
  els.system.readOnly = true;
  sessionStorage.setItem(OPEN_CONVERSATION, conversationId);
  return conversationId;
}

// --- asking, retrying, stopping --------------------------------------------------------------

// Sends `text`; `replacing` (a question's id) retries from that question.
async function send(text, replacing = null) {
  showStatus("");
  const question = view.add("user", text, replacing || crypto.randomUUID(), author("user"));
  const answer = view.add("assistant", "", null, author("assistant"));
  answer.streaming = true;
  answer.item.classList.add("streaming");
  answer.item.setAttribute("aria-busy", "true");
  const generating = { controller: new AbortController(), stopped: false };
  setGenerating(generating);
  let ended = false; // a final event or an error event arrived
  let failed = false;
  let conversationId = null;
  try {
    conversationId = await ensureConversation();
    options.save(conversationId);
    showInfo();
    await streamAnswer({
      conversationId,
      inputs: text,
      parameters: options.parameters(),
      messageId: question.id,
      isRetry: replacing !== null,
      signal: generating.controller.signal,
      onEvent: (event) => {
        if (event.error !== undefined) {
          const kind = event.error_type ? ` (${event.error_type})` : "";
          view.note(answer, `Error${kind}: ${event.error}`, true);
          ended = failed = true;
          return;
        }
        if (event.token && !event.token.special) {
          answer.content += event.token.text;
          view.paintSoon(answer);
        }
        if (typeof event.generated_text === "string") {
          ended = true;
          answer.content = event.generated_text;
          const reason = event.details && event.details.finish_reason;
          if (reason === "length") view.note(answer, "Stopped at the token limit.", false);
        }
      },
    });
    // The server ends a stopped answer without a final event, maybe before the abort lands.
    if (!ended && !generating.stopped) throw new Error("the answer broke off; try again");
  } catch (error) {
    failed = true;
    if (!generating.stopped) view.note(answer, `Error: ${error.message}`, true);
  } finally {
    if (generating.stopped && !ended) view.note(answer, "Stopped.", false);
    const follow = view.nearEnd();
    view.paint(answer);
    answer.streaming = false;
    answer.item.classList.remove("streaming");
    answer.item.removeAttribute("aria-busy");
    if (!answer.content && !answer.item.querySelector(".note")) {
      view.note(answer, "(no answer)", false);
    }
    setGenerating(null); // shows the answer's buttons
    if (follow) view.scrollToEnd();
  }
  if (conversationId === null) return;
  await refreshConversations();
  if (!failed && state.needsTitle && conversationId === state.conversationId) {
    state.needsTitle = false;
    summarize(conversationId);
  }
}

function retry() {
  const question = view.lastOf("user");
  if (!question || state.generating) return;
  view.removeFrom(question);
  send(question.content, question.id);
}

function startEdit(message) {
  if (state.generating) return;
  state.editing = message;
  els.prompt.value = message.content;
  els.editing.hidden = false;
  autoGrow();
  refreshActions();
  els.prompt.focus();
}

function cancelEdit() {
  if (!state.editing) return;
  state.editing = null;
  els.editing.hidden = true;
  els.prompt.value = "";
  autoGrow();
  refreshActions();
}

async function stop() {
  const generating = state.generating;
  if (!generating) return;
  generating.stopped = true;
  els.stop.disabled = true;
  try {
    if (state.conversationId) {
      await request("POST", `/conversation/${state.conversationId}/stop-generating`);
    }
  } catch (error) {
    showStatus(`Could not stop on the server: ${error.message}`);
  } finally {
    generating.controller.abort();
    els.stop.disabled = false;
  }
}

// --- start-up --------------------------------------------------------------------------------

async function loadModels() {
  const models = await requestJson("GET", "/api/models");
  els.model.replaceChildren(
    ...models.map((model) => {
      const option = element("option", "", `${model.id} (${model.backend})`);
      option.value = model.id;
      return option;
    }),
  );
  els.model.disabled = models.length === 0;
  return models;
}

// Shows the tab's conversation again after a reload.
async function restoreConversation() {
  const id = sessionStorage.getItem(OPEN_CONVERSATION);
  if (!id) return;
  try {
    showConversation(await requestJson("GET", `/conversation/${id}`));
  } catch {
    sessionStorage.removeItem(OPEN_CONVERSATION);
  }
}

function autoGrow() {
  els.prompt.style.height = "auto";
  els.prompt.style.height = `${els.prompt.scrollHeight + 2}px`;
}

function wire() {
  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const text = els.prompt.value.trim();
    if (!text || state.generating || els.model.disabled) return;
    const editing = state.editing;
    cancelEdit();
    els.prompt.value = "";
    autoGrow();
    if (editing) view.removeFrom(editing);
    send(text, editing ? editing.id : null);
  });
  els.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.form.requestSubmit();
    }
  });
  els.prompt.addEventListener("input", autoGrow);
  els.stop.addEventListener("click", stop);
  els.cancelEdit.addEventListener("click", () => {
    cancelEdit();
    els.prompt.focus();
  });
  document.addEventListener("keydown", (event) => {
    if (event.key !== "Escape") return;
    if (drawer.isOpen()) {
      event.preventDefault();
      drawer.close(true);
    } else if (state.generating) {
      event.preventDefault();
      stop();
    } else if (state.editing) {
      event.preventDefault();
      cancelEdit();
    }
  });
  els.newChat.addEventListener("click", () => {
    clearChat();
    drawer.close(false);
    els.prompt.focus();
  });
  for (const input of [els.system, els.temperature, els.maxNewTokens]) {
    input.addEventListener("input", showInfo);
  }
  els.model.addEventListener("change", async () => {
    clearChat();
    try {
      await postSettings(els.model.value);
    } catch (error) {
      showStatus(error.message);
    }
  });
}

async function start() {
  wire();
  try {
    const models = await loadModels();
    if (!models.length) {
      showStatus("The server serves no models.");
      return;
    }
    await postSettings(els.model.value);
    await refreshConversations();
    await restoreConversation();
    showInfo();
    document.body.dataset.ready = "true";
    els.prompt.focus();
  } catch (error) {
    showStatus(`Could not reach the server: ${error.message}`);
  }
}

start();
