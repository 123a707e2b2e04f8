// The session's conversations, newest first (GET /conversations): open, rename, delete.
// Titles may come from the model (summarize), so they are only ever set as text.

const SVG = "http://www.w3.org/2000/svg";
const ICONS = {
  rename: "M4 20h4L19 9l-4-4L4 16z M13.5 6.5l4 4",
  delete: "M4 7h16 M9 7V4h6v3 M6 7l1 13h10l1-13 M10 11v6 M14 11v6",
};

function icon(name) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  const path = document.createElementNS(SVG, "path");
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

function button(text, className) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  return element;
}

export class Sidebar {
  // list: the <ul>; empty: what shows when there is none; actions: {open, rename, remove},
  // each given a conversation id (rename also the new title) and returning a promise.
  constructor(list, empty, actions) {
    this.list = list;
    this.empty = empty;
    this.actions = actions;
    this.items = [];
    this.current = null;
    this.disabled = false;
  }

  // Shows `items`; a row being renamed or deleted stays as it is, and focus stays put.
  show(items) {
    this.items = items;
    this.empty.hidden = items.length > 0;
    const busy = new Map();
    for (const row of this.list.children) {
      if (row.dataset.mode) busy.set(row.dataset.id, row);
    }
    const focused = this.list.contains(document.activeElement) ? document.activeElement : null;
    const focusedRow = focused && focused.closest(".conversation");
    const key = focusedRow && !focusedRow.dataset.mode ? this.controlKey(focused) : null;
    const focusedId = focusedRow && focusedRow.dataset.id;
    this.list.replaceChildren(...items.map((item) => busy.get(item.id) || this.row(item)));
    if (key) {
      const row = [...this.list.children].find((r) => r.dataset.id === focusedId);
      const control = row && row.querySelector(key);
      if (control) control.focus();
    }
  }

  controlKey(control) {
    const label = control.getAttribute("aria-label");
    return label ? `[aria-label="${label}"]` : ".open";
  }

  titleOf(id) {
    const item = this.items.find((c) => c.id === id);
    return item ? item.title : null;
  }

  select(id) {
    this.current = id;
    for (const row of this.list.children) {
      const open = row.querySelector(".open");
      if (open) open.setAttribute("aria-current", String(row.dataset.id === id));
    }
  }

  // While an answer streams, the list cannot switch or change conversations.
  setDisabled(disabled) {
    this.disabled = disabled;
    for (const control of this.list.querySelectorAll("button, input")) {
      control.disabled = disabled;
    }
  }

  row(item) {
    const row = document.createElement("li");
    row.className = "conversation";
    row.dataset.id = item.id;
    const open = button(item.title, "open");
    open.id = `conversation-${item.id}`;
    open.title = item.title;
    open.setAttribute("aria-current", String(item.id === this.current));
    open.addEventListener("click", () => this.actions.open(item.id));
    const rename = button("", "icon");
    rename.append(icon("rename"));
    rename.setAttribute("aria-label", "Rename");
    rename.setAttribute("aria-describedby", open.id);
    rename.addEventListener("click", () => this.startRename(row, item));
    const remove = button("", "icon");
    remove.append(icon("delete"));
    remove.setAttribute("aria-label", "Delete");
    remove.setAttribute("aria-describedby", open.id);
    remove.addEventListener("click", () => this.confirmDelete(row, item));
    row.append(open, rename, remove);
    for (const control of [open, rename, remove]) control.disabled = this.disabled;
    return row;
  }

  restore(row, item, focusName) {
    const fresh = this.row(this.items.find((c) => c.id === item.id) || item);
    row.replaceWith(fresh);
    const focus = focusName ? fresh.querySelector(`[aria-label="${focusName}"]`) : null;
    if (focus) focus.focus();
  }

  startRename(row, item) {
    const form = document.createElement("form");
    form.className = "rename";
    const label = document.createElement("label");
    label.className = "visually-hidden";
    label.htmlFor = `rename-${item.id}`;
    label.textContent = "New title";
    const input = document.createElement("input");
    input.id = label.htmlFor;
    input.value = item.title;
    input.maxLength = 100;
    input.required = true;
    const save = button("Save", "small");
    save.type = "submit";
    const cancel = button("Cancel", "small secondary");
    const close = () => this.restore(row, item, "Rename");
    cancel.addEventListener("click", close);
    input.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        close();
      }
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const title = input.value.trim();
      if (!title) return;
      save.disabled = true;
      delete row.dataset.mode; // the list shows the new title next
      try {
        await this.actions.rename(item.id, title);
      } catch {
        save.disabled = false;
      }
    });
    form.append(label, input, save, cancel);
    row.dataset.mode = "rename";
    row.replaceChildren(form);
    input.focus();
    input.select();
  }

  confirmDelete(row, item) {
    const question = document.createElement("span");
    question.className = "confirm";
    question.textContent = `Delete \u201c${item.title}\u201d?`;
    const yes = button("Delete", "small danger");
    const no = button("Cancel", "small secondary");
    no.addEventListener("click", () => this.restore(row, item, "Delete"));
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      delete row.dataset.mode;
      try {
        await this.actions.remove(item.id);
      } catch {
        yes.disabled = false;
      }
    });
    row.dataset.mode = "delete";
    row.replaceChildren(question, yes, no);
    no.focus();
  }
}

// On a phone the list is a drawer over the page: the menu button, the close button, the
// backdrop and Esc (see app.js) open and close it; the page behind it is inert meanwhile.
export class Drawer {
  constructor(panel, menu, closeButton, backdrop, page) {
    Object.assign(this, { panel, menu, closeButton, backdrop, page });
    this.narrow = window.matchMedia("(max-width: 760px)"); // as in app.css
    menu.addEventListener("click", () => (this.isOpen() ? this.close(true) : this.open()));
    closeButton.addEventListener("click", () => this.close(true));
    backdrop.addEventListener("click", () => this.close(true));
    this.narrow.addEventListener("change", () => this.close(false));
  }

  isOpen() {
    return this.narrow.matches && this.panel.classList.contains("open");
  }

  open() {
    this.panel.classList.add("open");
    this.menu.setAttribute("aria-expanded", "true");
    this.backdrop.hidden = false;
    this.page.inert = true;
    const target = this.panel.querySelector('.open[aria-current="true"]')
      || this.panel.querySelector(".open") || this.closeButton;
    target.focus();
  }

  close(focusMenu) {
    if (!this.panel.classList.contains("open")) return;
    this.panel.classList.remove("open");
    this.menu.setAttribute("aria-expanded", "false");
    this.backdrop.hidden = true;
    this.page.inert = false;
    if (focusMenu) this.menu.focus();
  }
}
