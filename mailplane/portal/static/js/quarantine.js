// Quarantine viewer (SPEC §4, §11): list, open one message, release it to the inbox, delete.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { focusFirst, formErrorBox, h, heading } from "./ui.js";

const enc = encodeURIComponent;

/** The list call may answer a bare array or an object holding the items. */
function itemsOf(data) {
  if (Array.isArray(data)) return data;
  return data.items || data.messages || data.quarantine || [];
}

function when(value) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return date.toLocaleString(document.documentElement.lang === "en" ? "en-GB" : "ja-JP",
    { timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" });
}

function reasonLabel(reason) {
  const key = `reason_${String(reason || "").split(/[:_]/)[0]}`;
  const text = t(key);
  return text === key ? String(reason || "") : text;
}

function sizeLabel(size) {
  if (typeof size !== "number") return "";
  return size < 1024 ? `${size} B` : `${Math.ceil(size / 1024)} KB`;
}

export async function renderQuarantine(view, address, itemId) {
  if (itemId) return renderItem(view, address, itemId);
  const items = itemsOf(await api.quarantine(address));
  const status = sessionStorage.getItem("mp.flash") || "";
  sessionStorage.removeItem("mp.flash");
  const columns = ["receivedAt", "sender", "subject", "reason", "size", "colActions"];
  const cell = (label, ...content) => h("td", { "data-label": t(label) }, ...content);
  const list = items.length
    ? h("div", { class: "table-wrap" }, h("table", { class: "quarantine" },
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, t(c))))),
      h("tbody", {}, items.map((item) => h("tr", { dataset: { id: item.id } },
        cell("receivedAt", when(item.received_at)),
        cell("sender", item.header_from || item.sender || ""),
        cell("subject", item.subject || ""),
        cell("reason", reasonLabel(item.reason)),
        cell("size", sizeLabel(item.size)),
        cell("colActions", h("a", { class: "button small", href: `#/quarantine/${enc(address)}/${enc(item.id)}`,
          "aria-label": `${t("open")}: ${item.subject || item.id}` }, t("open"))))))))
    : h("p", { class: "card" }, t("quarantineEmpty"));
  view.replaceChildren(heading(t("quarantineTitle")), h("p", { class: "subtitle" }, address),
    h("p", { class: "status-line", role: "status" }, status),
    h("p", { class: "help" }, t("quarantineDesc")), list,
    h("div", { class: "actions" }, h("a", { href: `#/spam/${enc(address)}`, class: "button" }, t("toSpamMenu")),
      h("a", { href: "#/", class: "button" }, t("toMenu"))));
  focusFirst(view);
  return undefined;
}

async function renderItem(view, address, itemId) {
  const item = await api.quarantineItem(address, itemId);
  const entry = item.entry || item;
  const headers = (item.headers || []).map((pair) => Array.isArray(pair) ? pair : [pair.name, pair.value]);
  const box = formErrorBox();
  const listHref = `#/quarantine/${enc(address)}`;
  const act = (label, cls, action, question, call, flash) => {
    const button = h("button", { type: "button", class: cls, "data-action": action }, label);
    button.addEventListener("click", () => {
      const yes = h("button", { type: "button", class: cls, "data-action": `${action}-yes` }, t("yes"));
      const no = h("button", { type: "button" }, t("cancel"));
      const ask = h("div", { class: "confirm-box", role: "alertdialog", "aria-label": question },
        h("p", {}, question), yes, " ", no);
      no.addEventListener("click", () => { ask.remove(); button.focus(); });
      yes.addEventListener("click", async () => {
        yes.disabled = true;
        try {
          await call();
          sessionStorage.setItem("mp.flash", flash);
          location.hash = listHref;
        } catch (error) {
          ask.remove();
          box.textContent = t("errorGeneric", { message: error.message });
          box.hidden = false;
          box.focus();
        }
      });
      button.after(ask);
      yes.focus();
    });
    return button;
  };
  view.replaceChildren(heading(t("quarantineTitle")), h("p", { class: "subtitle" }, address),
    h("article", { class: "card message-view" }, box,
      h("dl", { class: "message-meta" },
        h("dt", {}, t("receivedAt")), h("dd", {}, when(entry.received_at)),
        h("dt", {}, t("sender")), h("dd", {}, entry.header_from || entry.sender || ""),
        h("dt", {}, t("subject")), h("dd", {}, entry.subject || ""),
        h("dt", {}, t("reason")), h("dd", {}, reasonLabel(entry.reason))),
      headers.length ? h("details", {}, h("summary", {}, t("headers")),
        h("pre", { class: "headers" }, headers.map(([n, v]) => `${n}: ${v}`).join("\n"))) : null,
      h("h3", {}, t("body")),
      h("pre", { class: "message" }, item.body_preview ?? item.body ?? item.text ?? ""),
      h("div", { class: "actions" },
        act(t("release"), "primary", "release", t("releaseConfirm"), () => api.release(address, itemId), t("released")),
        act(t("delete"), "danger", "discard", t("deleteConfirm"), () => api.discard(address, itemId), t("deleted")),
        h("a", { href: listHref, class: "button" }, t("backToList")))));
  focusFirst(view);
}
