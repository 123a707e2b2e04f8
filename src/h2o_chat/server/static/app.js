// The h2o-chat web page: chat-ui's 2023 protocol from the browser, no build step.
// Model output is always rendered with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const els = {
  model: $("model"),
  newChat: $("new-chat"),
  empty: $("empty"),
  messages: $("messages"),
  chat: $("chat"),
  status: $("status"),
  form: $("ask"),
  system: $("system"),
  temperature: $("temperature"),
  maxNewTokens: $("max-new-tokens"),
  prompt: $("prompt"),
  send: $("send"),
  stop: $("stop"),
};

const STORED_CONVERSATION = "h2o-chat.conversation";

const state = {
  conversationId: null, // created on the first send of a chat
  generating: null, // {controller, stopped} while an answer streams
};

// --- HTTP helpers -----------------------------------------------------------------------

async function errorText(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    return body.error || body.message || text;
  } catch {
    return text || response.statusText;
  }
}

async function request(method, path, body) {
  const init = { method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    throw new Error(`${method} ${path}: ${response.status} ${await errorText(response)}`);
  }
  return response;
}

// The welcome settings, posted as chat-ui's form action (the browser sends the Referer).
async function postSettings(model) {
  const form = new URLSearchParams({
    ethicsModalAccepted: "true",
    shareConversationsWithModelAuthors: "false",
    activeModel: model,
  });
  const response = await fetch("/settings", { method: "POST", body: form });
  if (!response.ok) {
    throw new Error(`settings: ${response.status} ${await errorText(response)}`);
  }
}

// --- rendering ---------------------------------------------------------------------------

function showStatus(text) {
  els.status.textContent = text;
}

function scrollToEnd() {
  els.chat.scrollTop = els.chat.scrollHeight;
}

function addMessage(role, text) {
  const item = document.createElement("li");
  item.className = `msg ${role}`;
  const who = document.createElement("p");
  who.className = "who";
  who.textContent = role === "user" ? "You" : els.model.value || "Assistant";
  const body = document.createElement("p");
  body.className = "text";
  body.textContent = text;
  item.append(who, body);
  els.messages.append(item);
  els.empty.hidden = true;
  scrollToEnd();
  return { item, body };
}

function addNote(item, text, isError) {
  const note = document.createElement("p");
  note.className = isError ? "note error" : "note";
  note.textContent = text;
  item.append(note);
}

function setGenerating(generating) {
  state.generating = generating;
  els.send.hidden = Boolean(generating);
  els.stop.hidden = !generating;
  els.model.disabled = Boolean(generating);
  els.newChat.disabled = Boolean(generating);
  if (!generating) els.prompt.focus();
}

function clearChat() {
  state.conversationId = null;
  sessionStorage.removeItem(STORED_CONVERSATION);
  els.messages.replaceChildren();
  els.empty.hidden = false;
  showStatus("");
}

// --- the TGI event stream ----------------------------------------------------------------

// Calls onEvent with each parsed `data:` event of a server-sent-event body.
async function readEvents(body, onEvent) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  const flushLine = (line) => {
    if (line.endsWith("\r")) line = line.slice(0, -1);
    if (line.startsWith("data:")) {
      data.push(line.slice(5));
    } else if (line === "" && data.length) {
      const event = JSON.parse(data.join("\n"));
      data = [];
      onEvent(event);
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    const lines = buffer.split("\n");
    buffer = lines.pop();
    lines.forEach(flushLine);
  }
  buffer += decoder.decode();
  if (buffer) flushLine(buffer);
  flushLine("");
}

function parameters() {
  const temperature = Number(els.temperature.value);
  const maxNewTokens = Number.parseInt(els.maxNewTokens.value, 10);
  const params = {
    max_new_tokens: Number.isInteger(maxNewTokens) && maxNewTokens > 0 ? maxNewTokens : 1024,
    truncate: 2048,
    repetition_penalty: 1.2,
    return_full_text: false,
    details: true,
  };
  if (temperature > 0) {
    params.do_sample = true;
    params.temperature = temperature;
  } else {
    params.do_sample = false;
  }
  return params;
}

async function ensureConversation() {
  if (state.conversationId) return state.conversationId;
  const body = { model: els.model.value };
  const system = els.system.value.trim();
  if (system) body.preprompt = system;
  const response = await request("POST", "/conversation", body);
  state.conversationId = (await response.json()).conversationId;
  sessionStorage.setItem(STORED_CONVERSATION, state.conversationId);
  return state.conversationId;
}

async function send(text) {
  showStatus("");
  addMessage("user", text);
  const { item, body } = addMessage("assistant", "");
  item.classList.add("streaming");
  item.setAttribute("aria-busy", "true");
  const generating = { controller: new AbortController(), stopped: false };
  setGenerating(generating);
  let answer = "";
  try {
    const id = await ensureConversation();
    const response = await fetch(`/conversation/${id}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify({
        inputs: text,
        parameters: parameters(),
        stream: true,
        options: {
          id: crypto.randomUUID(),
          response_id: crypto.randomUUID(),
          is_retry: false,
          use_cache: false,
          web_search_id: "",
        },
      }),
      signal: generating.controller.signal,
    });
    if (!response.ok) {
      throw new Error(`${response.status} ${await errorText(response)}`);
    }
    await readEvents(response.body, (event) => {
      if (event.error !== undefined) {
        const kind = event.error_type ? ` (${event.error_type})` : "";
        addNote(item, `Error${kind}: ${event.error}`, true);
        return;
      }
      if (event.token && !event.token.special) {
        answer += event.token.text;
        body.textContent = answer;
        scrollToEnd();
      }
      if (typeof event.generated_text === "string") {
        body.textContent = event.generated_text;
        const reason = event.details && event.details.finish_reason;
        if (reason === "length") addNote(item, "Stopped at the token limit.", false);
      }
    });
  } catch (error) {
    if (generating.stopped) {
      addNote(item, "Stopped.", false);
    } else {
      addNote(item, `Error: ${error.message}`, true);
    }
  } finally {
    item.classList.remove("streaming");
    item.removeAttribute("aria-busy");
    if (!body.textContent && !item.querySelector(".note")) addNote(item, "(no answer)", false);
    setGenerating(null);
  }
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

// --- start-up ------------------------------------------------------------------------------

async function loadModels() {
  const models = await (await request("GET", "/api/models")).json();
  els.model.replaceChildren(
    ...models.map((model) => {
      const option = document.createElement("option");
      option.value = model.id;
      option.textContent = `${model.id} (${model.backend})`;
      return option;
    }),
  );
  els.model.disabled = models.length === 0;
  return models;
}

// Shows the stored conversation of this tab again after a reload.
async function restoreConversation() {
  const id = sessionStorage.getItem(STORED_CONVERSATION);
  if (!id) return;
  try {
    const conversation = await (await request("GET", `/conversation/${id}`)).json();
    if (conversation.model) els.model.value = conversation.model;
    els.system.value = conversation.preprompt || "";
    for (const message of conversation.messages || []) {
      if (message.role === "user" || message.role === "assistant") {
        addMessage(message.role, message.content);
      }
    }
    state.conversationId = id;
  } catch {
    sessionStorage.removeItem(STORED_CONVERSATION);
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
    els.prompt.value = "";
    autoGrow();
    send(text);
  });
  els.prompt.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      els.form.requestSubmit();
    }
  });
  els.prompt.addEventListener("input", autoGrow);
  els.stop.addEventListener("click", stop);
  els.newChat.addEventListener("click", () => {
    clearChat();
    els.prompt.focus();
  });
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
    await restoreConversation();
    document.body.dataset.ready = "true";
    els.prompt.focus();
  } catch (error) {
    showStatus(`Could not reach the server: ${error.message}`);
  }
}

start();
