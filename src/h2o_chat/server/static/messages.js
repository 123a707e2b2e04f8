// The messages of the open conversation: questions as text, answers as safe Markdown, each
// with its buttons (Copy and Retry on answers, Edit on the last question).

import { renderMarkdown } from "./markdown.js";

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function actionButton(text, onClick) {
  const button = element("button", "small secondary", text);
  button.type = "button";
  button.addEventListener("click", onClick);
  return button;
}

async function copyText(text, button) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => {
    button.textContent = label;
  }, 1500);
}

// Wraps each code block with its language and a copy button; lets wide tables scroll.
function decorate(body) {
  for (const pre of body.querySelectorAll("pre")) {
    const code = pre.querySelector("code");
    const language = code && /^language-(.+)$/.exec(code.className);
    const block = element("div", "code-block");
    const bar = element("div", "code-bar");
    const copy = actionButton("Copy code", () => copyText(code ? code.textContent : "", copy));
    bar.append(element("span", "language", language ? language[1] : "code"), copy);
    pre.tabIndex = 0; // a wide block scrolls by keyboard too
    pre.replaceWith(block);
    block.append(bar, pre);
  }
  for (const table of body.querySelectorAll("table")) {
    const scroll = element("div", "table-scroll");
    scroll.tabIndex = 0;
    table.replaceWith(scroll);
    scroll.append(table);
  }
}

export class MessageList {
  // list: the <ol>; scroller: what scrolls; empty: shown when there is none;
  // actions: {edit(message), retry()}.
  constructor(list, scroller, empty, actions) {
    this.list = list;
    this.scroller = scroller;
    this.empty = empty;
    this.actions = actions;
    this.messages = []; // in order: {id, role, content, item, body, streaming, ...}
  }

  nearEnd() {
    const { scrollTop, scrollHeight, clientHeight } = this.scroller;
    return scrollHeight - scrollTop - clientHeight < 80;
  }

  scrollToEnd() {
    this.scroller.scrollTop = this.scroller.scrollHeight;
  }

  // Appends a message; `who` names its author.
  add(role, content, id, who) {
    const message = { id, role, content, frame: 0, streaming: false };
    const item = element("li", `msg ${role}`);
    const actions = element("div", "actions");
    if (role === "user") {
      message.body = element("p", "text", content);
      message.edit = actionButton("Edit", () => this.actions.edit(message));
      actions.append(message.edit);
    } else {
      message.body = element("div", "text markdown");
      message.copy = actionButton("Copy", () => copyText(message.content, message.copy));
      message.retry = actionButton("Retry", () => this.actions.retry());
      actions.append(message.copy, message.retry);
    }
    item.append(element("p", "who", who), message.body, actions);
    message.item = item;
    this.messages.push(message);
    this.list.append(item);
    this.empty.hidden = true;
    if (role === "assistant") this.paint(message);
    this.scrollToEnd();
    return message;
  }

  note(message, text, isError) {
    const note = element("p", isError ? "note error" : "note", text);
    message.item.insertBefore(note, message.item.querySelector(".actions"));
  }

  // Renders an answer's Markdown now.
  paint(message) {
    if (message.frame) cancelAnimationFrame(message.frame);
    message.frame = 0;
    message.body.replaceChildren(renderMarkdown(message.content));
    decorate(message.body);
  }

  // Renders a streaming answer at most once a frame; its raw text stays the source.
  paintSoon(message) {
    if (message.frame) return;
    message.frame = requestAnimationFrame(() => {
      message.frame = 0;
      const follow = this.nearEnd();
      this.paint(message);
      if (follow) this.scrollToEnd();
    });
  }

  lastOf(role) {
    return this.messages.findLast((m) => m.role === role) || null;
  }

  // Copy on every finished answer; unless `busy`, Retry on the last answer and Edit on the
  // last question.
  refreshActions(busy) {
    const [question, answer] = [this.lastOf("user"), this.lastOf("assistant")];
    for (const message of this.messages) {
      if (message.copy) message.copy.hidden = message.streaming;
      if (message.retry) message.retry.hidden = busy || message !== answer;
      if (message.edit) message.edit.hidden = busy || message !== question;
    }
  }

  // Takes `message` and every later one off the screen.
  removeFrom(message) {
    const index = this.messages.indexOf(message);
    for (const later of this.messages.splice(index)) later.item.remove();
    this.empty.hidden = this.messages.length > 0;
  }

  clear() {
    for (const message of this.messages) {
      if (message.frame) cancelAnimationFrame(message.frame);
    }
    this.messages = [];
    this.list.replaceChildren();
    this.empty.hidden = false;
  }
}
