// Small DOM helpers shared by the screens: element builder, step bar, labelled fields,
// errors next to their field (all at once), and the manual's input → confirm → done flow
// with each step at its own URL, so Back and reload keep the screen.

import { ApiError } from "./api.js";
import { go, replaceRoute } from "./router.js";
import { t } from "./i18n.js";
import { text } from "./rules.js";

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

/** h("button", {type: "button", onclick: fn, class: "x"}, "text", child) — no inline
 *  handlers or styles ever reach the markup (the portal runs under a strict CSP). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "dataset") {
      Object.assign(node.dataset, value);
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace the screen's content; null/false parts (optional blocks) are left out. */
export function fill(view, ...children) {
  view.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

/** A mail address that breaks only after the @ (never inside a word). */
export function addressText(address) {
  const at = address.indexOf("@");
  if (at < 0) return h("span", { class: "address" }, address);
  return h("span", { class: "address" },
    h("span", { class: "nowrap" }, address.slice(0, at)), h("wbr"),
    h("span", { class: "nowrap" }, address.slice(at)));
}

/** The numbered step bar at the top of each flow ("1 内容の入力 2 内容の確認 3 設定完了"). */
export function stepBar(labels, current) {
  return h("ol", { class: "steps", "aria-label": t("steps") },
    labels.map((label, index) => h("li", {
      class: index === current ? "current" : index < current ? "past" : "",
      "aria-current": index === current ? "step" : null,
    }, h("span", { class: "step-no" }, String(index + 1)), " ", label)));
}

/** The screen's heading (takes the focus) and the document title. */
export function heading(title, level = 2) {
  document.title = `${title} - ${t("brand")}`;
  return h(`h${level}`, { tabindex: "-1", class: "screen-title" }, title);
}

export function focusFirst(root) {
  const title = root.querySelector(".screen-title");
  if (title) title.focus();
}

/** A status message that screen readers announce (not the whole page). */
export function statusLine(message) {
  return h("p", { class: "status-line", role: "status" }, message || "");
}

/** 【ご注意】 box, as the manual marks its warnings. */
export function caution(...content) {
  return h("div", { class: "caution", role: "note" },
    h("strong", { class: "caution-mark" }, t("caution")), " ", ...content);
}

/**
 * A labelled control with help text and an error slot.  `name` is the API field name
 * (error.field) so messages land next to the right control.
 */
export function field({ label, control, help, name }) {
  const id = control.id || nextId("f");
  control.id = id;
  if (name) control.dataset.field = name;
  const errorId = `${id}-error`;
  const helpId = help ? `${id}-help` : null;
  control.setAttribute("aria-describedby", [helpId, errorId].filter(Boolean).join(" "));
  const isCheck = control.type === "checkbox" || control.type === "radio";
  return h("div", { class: `field${isCheck ? " field-check" : ""}` },
    isCheck ? null : h("label", { for: id }, label),
    isCheck ? control : null,
    isCheck ? h("label", { for: id }, label) : control,
    help ? h("p", { class: "help", id: helpId }, help) : null,
    h("ul", { class: "field-error", id: errorId, hidden: true }));
}

/** Lines of a textarea without blanks, remembering each value's line number. */
export function linesOf(textarea) {
  const values = [];
  const lineNumbers = [];
  textarea.value.split(/\r?\n/).forEach((line, index) => {
    if (line.trim()) {
      values.push(line);
      lineNumbers.push(index + 1);
    }
  });
  textarea.lineNumbers = lineNumbers;
  return values;
}

export function clearErrors(root) {
  for (const node of root.querySelectorAll(".field-error")) {
    node.replaceChildren();
    node.hidden = true;
  }
  for (const node of root.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of root.querySelectorAll(".form-error")) {
    node.textContent = "";
    node.hidden = true;
  }
}

function controlFor(root, fieldName) {
  if (!fieldName) return { control: null, line: null };
  const exact = root.querySelector(`[data-field="${CSS.escape(fieldName)}"]`);
  if (exact) return { control: exact, line: null };
  const match = /^(.*)\[(\d+)\]$/.exec(fieldName);
  if (match) {
    const control = root.querySelector(`[data-field="${CSS.escape(match[1])}"]`);
    if (control) {
      const index = Number(match[2]);
      const line = control.lineNumbers ? control.lineNumbers[index] ?? index + 1 : null;
      return { control, line };
    }
  }
  return { control: null, line: null };
}

/**
 * Show one message (a rules.js message or a server string) next to the control for
 * `fieldName`; several messages for one control are listed together.  Returns the control,
 * or null when the message went to the form-level box.
 */
export function showFieldError(root, fieldName, message) {
  const { control, line } = controlFor(root, fieldName);
  const words = text(message);
  if (!control) {
    const box = root.querySelector(".form-error");
    if (box) {
      box.textContent = box.textContent ? `${box.textContent}\n${words}` : words;
      box.hidden = false;
    }
    return null;
  }
  control.setAttribute("aria-invalid", "true");
  const slot = document.getElementById(`${control.id}-error`);
  if (slot) {
    slot.append(h("li", {}, line ? t("lineError", { line, message: words }) : words));
    slot.hidden = false;
  }
  return control;
}

/** Every error at once; focus goes to the first field with one. */
export function showErrors(root, errors) {
  let first = null;
  for (const error of errors) {
    const control = showFieldError(root, error.field, error.message);
    first = first || control;
  }
  (first || root.querySelector(".form-error"))?.focus();
}

/** A server refusal: every field it names (details), else its message in the form box. */
export function showApiError(root, error) {
  const details = (error.details || []).filter((d) => d.field);
  showErrors(root, details.length ? details : [{ field: error.field, message: error.message }]);
}

export function formErrorBox() {
  return h("p", { class: "form-error", role: "alert", tabindex: "-1", hidden: true });
}

/** Definition table used by confirm and done screens. */
export function summary(rows) {
  return h("table", { class: "summary" },
    h("tbody", {}, rows.map(([label, value]) =>
      h("tr", {}, h("th", { scope: "row" }, label), h("td", {}, value)))));
}

export function multiline(values) {
  if (!values.length) return t("none");
  return h("ul", { class: "plain-list" }, values.map((value) => h("li", {}, value)));
}

export const onOff = (value) => (value ? t("on") : t("off"));

// Drafts between the input and confirm steps: sessionStorage (survives reload, gone with
// the tab) — or memory only for forms holding passwords.
const memory = new Map();
export const drafts = {
  get(key, persist) {
    if (!persist) return memory.get(key) ?? null;
    const raw = sessionStorage.getItem(`mp.draft:${key}`);
    return raw ? JSON.parse(raw) : null;
  },
  set(key, value, persist) {
    if (persist) sessionStorage.setItem(`mp.draft:${key}`, JSON.stringify(value));
    else memory.set(key, value);
  },
  clear(key) {
    memory.delete(key);
    sessionStorage.removeItem(`mp.draft:${key}`);
  },
};

/**
 * The manual's three-step form: input → confirm → done (e.g. L4323-4335), each step at its
 * own URL (`base`, `base/confirm`, `base/done`).
 *  - `build(form, values)` adds the controls filled with `values` (the draft or `current`);
 *  - `collect()` returns {body, errors}: the browser's checks, every error at once;
 *  - `rows(body)` gives the confirm/done lines; `save(body)` calls the API and resolves with
 *    the stored values; `done` is the done message (what changed).
 */
export function settingsFlow(view, options) {
  const { title, subtitle, help, notes, build, collect, rows, save, backHref, backLabel,
    current, base, step, persist = true, done, saveLabel, confirmHelp } = options;
  const labels = options.labels || [t("step_input"), t("step_confirm"), t("step_done")];
  const key = base;

  const show = (index, ...content) => {
    fill(view, heading(title), subtitle ? h("p", { class: "subtitle" }, subtitle) : null,
      stepBar(labels, index), ...content);
    focusFirst(view);
  };

  function showInput(values, serverError) {
    const form = h("form", { class: "card", novalidate: true });
    form.append(formErrorBox());
    build(form, values);
    form.append(h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("next")),
      h("a", { href: backHref, class: "button" }, t("back"))));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      const collected = collect(form);
      if (collected.errors && collected.errors.length) {
        showErrors(form, collected.errors);
        return;
      }
      drafts.set(key, collected.body, persist);
      go(`${base}/confirm`);
    });
    show(0, help ? h("p", { class: "help" }, help) : null, notes || null, form);
    if (serverError) showApiError(form, serverError);
  }

  function showConfirm(body) {
    const saveButton = h("button", { type: "button", class: "primary", "data-action": "save" }, saveLabel || t("register"));
    saveButton.addEventListener("click", async () => {
      saveButton.disabled = true;
      try {
        const stored = await save(body);
        drafts.clear(key);
        sessionStorage.setItem(`mp.done:${key}`, JSON.stringify(stored));
        replaceRoute(`${base}/done`);
      } catch (error) {
        saveButton.disabled = false;
        if (error.status === 401) return;
        replaceRoute(base, { silent: true });
        showInput(body, error);
      }
    });
    show(1, h("div", { class: "card" },
      h("p", {}, confirmHelp || t("formConfirmHelp")),
      summary(rows(body)),
      h("div", { class: "actions" }, saveButton,
        h("a", { href: base, class: "button" }, t("back")))));
  }

  function showDone() {
    const raw = sessionStorage.getItem(`mp.done:${key}`);
    const stored = raw ? JSON.parse(raw) : current;
    show(2, h("div", { class: "card" },
      h("p", { class: "done-message", role: "status" }, done || t("formDone")),
      summary(rows(stored)),
      h("div", { class: "actions" }, h("a", { href: backHref, class: "button primary" }, backLabel))));
  }

  if (step === "confirm") {
    const draft = drafts.get(key, persist);
    if (draft) showConfirm(draft);
    else replaceRoute(base);
  } else if (step === "done") {
    showDone();
  } else {
    showInput(drafts.get(key, persist) || current);
  }
}

/** A radio pair (ON/OFF, 残す/残さない) as a fieldset; returns {node, get(), set()}. */
export function radioPair({ legend, name, yes, no, value, field: fieldName }) {
  const yesInput = h("input", { type: "radio", name, value: "1", id: nextId(name) });
  const noInput = h("input", { type: "radio", name, value: "0", id: nextId(name) });
  (value ? yesInput : noInput).checked = true;
  if (fieldName) yesInput.dataset.field = fieldName;
  const node = h("fieldset", { class: "radio-pair" }, h("legend", {}, legend),
    yesInput, h("label", { for: yesInput.id }, yes),
    noInput, h("label", { for: noInput.id }, no),
    h("ul", { class: "field-error", id: `${yesInput.id}-error`, hidden: true }));
  return { node, get: () => yesInput.checked, set: (v) => { (v ? yesInput : noInput).checked = true; } };
}

/** A form whose submit runs `work` once at a time (the button waits) and shows an API
 *  refusal next to the fields it names; a 401 is left to the sign-in screen. */
export function onSubmit(form, work) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await work();
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (error.status !== 401) showApiError(form, error);
    } finally {
      button.disabled = false;
    }
  });
}

/** Error screen for a failed load (e.g. an address that does not exist): the server's words. */
export function failure(view, error) {
  fill(view, heading(t("errorTitle")),
    h("p", { class: "form-error", role: "alert" }, error.message),
    h("a", { href: "#/", class: "button" }, t("toMenu")));
  focusFirst(view);
}
