// Small DOM helpers shared by the views: element builder, step indicator, labelled fields,
// API errors shown next to their field, and the manual's input → confirm → done flow.

import { bareMessage } from "./api.js";
import { t } from "./i18n.js";

let uid = 0;
export const nextId = (prefix) => `${prefix}-${++uid}`;

/** h("button", {type: "button", onclick: fn, class: "x"}, "text", child) */
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

/** The numbered step bar at the top of each flow ("1 内容の入力 2 内容の確認 3 設定完了"). */
export function stepBar(labels, current) {
  return h("ol", { class: "steps", "aria-label": "steps" },
    labels.map((label, index) => h("li", {
      class: index === current ? "current" : index < current ? "past" : "",
      "aria-current": index === current ? "step" : null,
    }, h("span", { class: "step-no" }, String(index + 1)), " ", label)));
}

/** Heading that takes the focus when a screen is drawn (keyboard and screen readers). */
export function heading(text, level = 2) {
  return h(`h${level}`, { tabindex: "-1", class: "screen-title" }, text);
}

export function focusFirst(root) {
  const title = root.querySelector(".screen-title");
  if (title) title.focus();
}

/**
 * A labelled control with help text and an error slot.  `name` is the API field name
 * (error.field) so validation messages land next to the right control.
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
    h("p", { class: "field-error", id: errorId, role: "alert", hidden: true }));
}

/** Lines of a textarea without blanks, remembering each value's line number. */
export function linesOf(textarea) {
  const values = [];
  const lineNumbers = [];
  textarea.value.split(/\r?\n/).forEach((line, index) => {
    if (line.trim()) {
      values.push(line.trim());
      lineNumbers.push(index + 1);
    }
  });
  textarea.lineNumbers = lineNumbers;
  return values;
}

export function clearErrors(root) {
  for (const node of root.querySelectorAll(".field-error")) {
    node.textContent = "";
    node.hidden = true;
  }
  for (const node of root.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  for (const node of root.querySelectorAll(".form-error")) {
    node.textContent = "";
    node.hidden = true;
  }
}

/**
 * Show a message next to the control for `fieldName`: an exact match (`destinations[0]`,
 * `local_part`), or a list field (`addresses[2]`) mapped to its textarea line.
 * Returns the control, or null when the message went to the form-level box.
 */
export function showFieldError(root, fieldName, message) {
  let control = fieldName ? root.querySelector(`[data-field="${CSS.escape(fieldName)}"]`) : null;
  let text = message;
  if (!control && fieldName) {
    const match = /^(.*)\[(\d+)\]$/.exec(fieldName);
    if (match) {
      control = root.querySelector(`[data-field="${CSS.escape(match[1])}"]`);
      if (control && control.lineNumbers) {
        const line = control.lineNumbers[Number(match[2])] ?? Number(match[2]) + 1;
        text = t("lineError", { line, message });
      }
    }
  }
  if (!control) {
    const box = root.querySelector(".form-error");
    if (box) {
      box.textContent = message;
      box.hidden = false;
    }
    return null;
  }
  control.setAttribute("aria-invalid", "true");
  const slot = document.getElementById(`${control.id}-error`);
  if (slot) {
    slot.textContent = text;
    slot.hidden = false;
  }
  return control;
}

export function showApiError(root, error) {
  const control = showFieldError(root, error.field, bareMessage(error));
  if (!control) {
    const box = root.querySelector(".form-error");
    if (box) {
      box.textContent = t("errorGeneric", { message: error.message });
      box.hidden = false;
      box.focus();
    }
  } else {
    control.focus();
  }
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

export function onOff(value) {
  return value ? t("on") : t("off");
}

/**
 * The manual's three-step form: input → confirm → done (e.g. L4323-4335).
 * `build(form)` adds the controls; `collect(form)` returns {body, errors}; `rows(body)` gives
 * the confirm/done lines; `save(body)` calls the API and resolves with the stored values.
 */
export function settingsFlow(view, { title, subtitle, help, build, collect, rows, save, backHref, backLabel }) {
  const labels = [t("step_input"), t("step_confirm"), t("step_done")];
  const form = h("form", { class: "card", novalidate: true });
  const errorBox = formErrorBox();
  form.append(errorBox);
  build(form);
  form.append(h("div", { class: "actions" },
    h("button", { type: "submit", class: "primary" }, t("next")),
    h("a", { href: backHref, class: "button" }, t("back"))));
  let body = null;

  const show = (index, content) => {
    view.replaceChildren(heading(title), subtitle ? h("p", { class: "subtitle" }, subtitle) : null,
      stepBar(labels, index), content);
    focusFirst(view);
  };

  const showInput = () => {
    show(0, h("div", {}, help ? h("p", { class: "help" }, help) : null, form));
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearErrors(form);
    const collected = collect(form);
    if (collected.errors && collected.errors.length) {
      let first = null;
      for (const error of collected.errors) {
        first = showFieldError(form, error.field, error.message) || first;
      }
      (first || errorBox).focus();
      return;
    }
    body = collected.body;
    const saveButton = h("button", { type: "button", class: "primary", onclick: onSave }, t("register"));
    show(1, h("div", { class: "card" },
      h("p", {}, t("formConfirmHelp")),
      summary(rows(body)),
      h("div", { class: "actions" }, saveButton,
        h("button", { type: "button", onclick: showInput }, t("back")))));
  });

  async function onSave(event) {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      const stored = await save(body);
      show(2, h("div", { class: "card" },
        h("p", { class: "done-message", role: "status" }, t("formDone")),
        summary(rows(stored)),
        h("div", { class: "actions" }, h("a", { href: backHref, class: "button primary" }, backLabel))));
    } catch (error) {
      showInput();
      showApiError(form, error);
    } finally {
      button.disabled = false;
    }
  }

  showInput();
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
    h("p", { class: "field-error", id: `${yesInput.id}-error`, role: "alert", hidden: true }));
  return { node, get: () => yesInput.checked, set: (v) => { (v ? yesInput : noInput).checked = true; } };
}
