// The "shown once" password sheet (L3913-3915, L4015-4031): address, POP account, password,
// its katakana reading with upper-case letters underlined, the date, a print view, and the
// way on to the mail client setup.

import { t } from "./i18n.js";
import { addressText, h, summary } from "./ui.js";

/** Reading aid: one unit per character, never broken inside; upper case underlined. */
export function readingNode(reading) {
  return h("span", { class: "reading" }, reading.map((item, index) => [
    index ? " " : "",
    item.upper
      ? h("u", { class: "upper", title: item.char }, item.reading)
      : h("span", { title: item.char }, item.reading),
  ]));
}

/** A printable section; "印刷画面へ" switches the page to show only this section. */
export function passwordSheet({ message, address, popAccount, issued, dateLabel }) {
  const printButton = h("button", { type: "button", class: "no-print", "data-action": "print-view" }, t("printView"));
  const printNow = h("button", { type: "button", class: "primary print-only-controls", onclick: () => window.print() }, t("print"));
  const close = h("button", { type: "button", class: "print-only-controls" }, t("closePrint"));
  const sheet = h("section", { class: "card print-area", "aria-label": message },
    h("p", { class: "done-message", role: "status" }, message),
    h("p", { class: "warning" }, t("doneOnce")),
    summary([
      [t("colAddress"), addressText(address)],
      [t("colPop"), popAccount],
      [t("password"), h("code", { class: "password", "data-testid": "password" }, issued.password)],
      [t("passwordReading"), readingNode(issued.reading)],
      [dateLabel, issued.changed_on],
    ]),
    h("p", { class: "help" }, t("readingNote")),
    h("div", { class: "actions" }, printButton, printNow, close,
      h("a", { href: `#/setup/${encodeURIComponent(address)}`, class: "button no-print" }, t("clientSetupNext"))));
  printButton.addEventListener("click", () => {
    document.body.classList.add("print-mode");
    printNow.focus();
  });
  close.addEventListener("click", () => {
    document.body.classList.remove("print-mode");
    printButton.focus();
  });
  return sheet;
}

/** Leaving the page closes the print view (and the password is not kept anywhere). */
window.addEventListener("hashchange", () => document.body.classList.remove("print-mode"));
