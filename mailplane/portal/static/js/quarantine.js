// Quarantine viewer (SPEC §4, §11): list with each message's expiry (several can be chosen
// and deleted at once), open one message — its text and its HTML, which the API has
// sanitised and which is shown in a sandboxed frame (no script runs, nothing is fetched) —
// release it to the inbox (and, for the contract holder, add the sender to the allow list
// in the same step), or delete it.  A spoofed message (なりすまし, SPEC §8b) carries a
// warning and no "allow the sender": its sender is exactly what it could not prove.

import { api, session } from "./api.js";
import { t } from "./i18n.js";
import { replaceRoute } from "./router.js";
import { rules } from "./rules.js";
import { addressText, fill, focusFirst, formErrorBox, h, heading, headingText, statusLine } from "./ui.js";
import { webmailNote } from "./webmail.js";

const enc = encodeURIComponent;
/** Headers mailplane adds for itself: of no use to the customer. */
const INTERNAL_HEADER = /^x-mailplane-/i;

export function when(value, withTime = true) {
  if (!value) return "";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  const options = { timeZone: "Asia/Tokyo", year: "numeric", month: "2-digit", day: "2-digit" };
  if (withTime) Object.assign(options, { hour: "2-digit", minute: "2-digit" });
  return date.toLocaleString(document.documentElement.lang === "en" ? "en-GB" : "ja-JP", options);
}

function reasonLabel(reason) {
  const key = `reason_${String(reason || "").split(/[:_]/)[0]}`;
  const label = t(key);
  return label === key ? String(reason || "") : label;
}

function sizeLabel(size) {
  if (typeof size !== "number") return "";
  return size < 1024 ? `${size} B` : `${Math.ceil(size / 1024)} KB`;
}

function senderOf(item) {
  const from = /<([^<>\s]+@[^<>\s]+)>/.exec(item.header_from || "");
  return (item.sender || (from ? from[1] : "")).toLowerCase();
}

export async function renderQuarantine(view, address, itemId) {
  if (itemId) return renderItem(view, address, itemId);
  const data = await api.quarantine(address);
  const items = data.items || [];
  const status = sessionStorage.getItem("mp.flash") || "";
  sessionStorage.removeItem("mp.flash");
  fill(view, heading(t("quarantineTitle")), h("p", { class: "subtitle" }, addressText(address)),
    statusLine(status),
    h("p", { class: "help" }, t("quarantineDesc", { days: rules().quarantine_days })),
    webmailNote("webmailQuarantine"),
    items.length ? quarantineList(view, address, items) : h("p", { class: "card" }, t("quarantineEmpty")),
    h("div", { class: "actions" },
      session.isMailbox ? null : h("a", { href: `#/spam/${enc(address)}`, class: "button" }, t("toSpamMenu")),
      h("a", { href: "#/", class: "button" }, t("toMenu"))));
  focusFirst(view);
  return undefined;
}

/** The table of quarantined messages, each with a checkbox, and 選択したメールを削除. */
function quarantineList(view, address, items) {
  const columns = ["receivedAt", "sender", "subject", "reason", "size", "expiresAt", "colActions"];
  const cell = (label, ...content) => h("td", { "data-label": t(label) }, ...content);
  const box = formErrorBox();
  const choices = items.map((item) => h("input", {
    type: "checkbox", class: "choose", value: item.id,
    "aria-label": t("chooseMessage", { subject: item.subject || item.id }),
  }));
  const all = h("input", { type: "checkbox", class: "choose-all", "aria-label": t("chooseAll") });
  const remove = h("button", { type: "button", class: "danger", "data-action": "delete-chosen", disabled: true },
    t("deleteChosen"));
  const chosen = () => choices.filter((c) => c.checked).map((c) => c.value);
  const update = () => {
    const count = chosen().length;
    remove.disabled = count === 0;
    remove.textContent = count ? t("deleteChosenCount", { n: count }) : t("deleteChosen");
    all.checked = count === choices.length;
    all.indeterminate = count > 0 && count < choices.length;
  };
  all.addEventListener("change", () => { for (const c of choices) c.checked = all.checked; update(); });
  for (const c of choices) c.addEventListener("change", update);
  remove.addEventListener("click", () => {
    const ids = chosen();
    confirmInline(remove, t("deleteChosenConfirm", { n: ids.length }), "danger", "delete-chosen-yes", async () => {
      try {
        const result = await api.discardMany(address, ids);
        sessionStorage.setItem("mp.flash", t("deletedMany", { n: result.deleted }));
        await renderQuarantine(view, address);
      } catch (error) {
        if (error.status === 401) return;
        box.textContent = error.message;
        box.hidden = false;
        box.focus();
      }
    });
  });
  return h("div", { class: "quarantine-list" }, box,
    h("label", { class: "choose-all-label" }, all, " ", t("chooseAll")),
    h("div", { class: "table-wrap" }, h("table", { class: "quarantine" },
      h("caption", { class: "visually-hidden" }, t("quarantineTitle")),
      h("thead", {}, h("tr", {}, h("th", { scope: "col", class: "choose-cell" }, h("span", { class: "visually-hidden" }, t("choose"))),
        columns.map((c) => h("th", { scope: "col" }, headingText(t(c)))))),
      h("tbody", {}, items.map((item, index) => h("tr", { dataset: { id: item.id } },
        h("td", { class: "choose-cell", "data-label": t("choose") },
          h("label", { class: "choose-target" }, choices[index])),
        cell("receivedAt", when(item.received_at)),
        cell("sender", item.header_from || item.sender || ""),
        cell("subject", item.subject || ""),
        cell("reason", reasonLabel(item.reason)),
        cell("size", sizeLabel(item.size)),
        cell("expiresAt", when(item.expires_at)),
        cell("colActions", h("a", { class: "button small", href: `#/quarantine/${enc(address)}/${enc(item.id)}`,
          "aria-label": `${t("open")}: ${item.subject || item.id}` }, t("open")))))))),
    h("div", { class: "actions" }, remove));
}

/** はい/キャンセル next to `button`; `call` runs on はい (its button waits meanwhile). */
function confirmInline(button, question, cls, action, call) {
  const yes = h("button", { type: "button", class: cls, "data-action": action }, t("yes"));
  const no = h("button", { type: "button" }, t("cancel"));
  const ask = h("div", { class: "confirm-box", role: "group", "aria-label": question },
    h("p", {}, question), yes, " ", no);
  no.addEventListener("click", () => { ask.remove(); button.focus(); });
  yes.addEventListener("click", async () => {
    yes.disabled = true;
    try {
      await call();
    } finally {
      ask.remove();
    }
  });
  button.after(ask);
  yes.focus();
}

async function releaseAndAllow(address, itemId, sender) {
  await api.release(address, itemId);
  if (!sender) return;
  const current = await api.get(address, "allow-list");
  if (!current.addresses.includes(sender)) {
    await api.put(address, "allow-list", { addresses: [...current.addresses, sender] });
  }
}

async function renderItem(view, address, itemId) {
  const item = await api.quarantineItem(address, itemId);
  const headers = (item.headers || []).filter((pair) => !INTERNAL_HEADER.test(pair.name));
  const box = formErrorBox();
  const listHref = `#/quarantine/${enc(address)}`;
  const sender = senderOf(item);
  const spoofed = item.reason === "spoofed";
  const act = (label, cls, action, question, call, flash) => {
    const button = h("button", { type: "button", class: cls, "data-action": action }, label);
    button.addEventListener("click", () => confirmInline(button, question, cls, `${action}-yes`, async () => {
      try {
        await call();
        sessionStorage.setItem("mp.flash", flash);
        replaceRoute(listHref);
      } catch (error) {
        if (error.status === 401) return;
        box.textContent = error.message;
        box.hidden = false;
        box.focus();
      }
    }));
    return button;
  };
  fill(view, heading(t("quarantineItemTitle")), h("p", { class: "subtitle" }, addressText(address)),
    h("article", { class: "card message-view" }, box,
      spoofed ? h("p", { class: "warning", role: "note" }, t("spoofedWarning")) : null,
      h("dl", { class: "message-meta" },
        h("dt", {}, t("receivedAt")), h("dd", {}, when(item.received_at)),
        h("dt", {}, t("sender")), h("dd", {}, item.header_from || item.sender || ""),
        h("dt", {}, t("subject")), h("dd", {}, item.subject || ""),
        h("dt", {}, t("reason")), h("dd", {}, reasonLabel(item.reason)),
        h("dt", {}, t("expiresAt")), h("dd", {}, t("expiresNote", { date: when(item.expires_at) }))),
      headers.length ? h("details", {}, h("summary", {}, t("headers")),
        h("pre", { class: "headers" }, headers.map((pair) => `${pair.name}: ${pair.value}`).join("\n"))) : null,
      messageBodies(item),
      h("div", { class: "actions" },
        act(t("release"), "primary", "release", t("releaseConfirm"), () => api.release(address, itemId), t("released")),
        session.isMailbox || !sender || spoofed ? null
          : act(t("releaseAndAllow"), "", "release-allow", t("releaseAllowConfirm", { sender }),
            () => releaseAndAllow(address, itemId, sender), t("releasedAllowed", { sender })),
        act(t("delete"), "danger", "discard", t("deleteConfirm"), () => api.discard(address, itemId), t("deleted")),
        h("a", { href: listHref, class: "button" }, t("backToList")))));
  focusFirst(view);
}

/** The message's text and, beside it, its HTML: sanitised by the API (no script, no style,
 *  images as [alt], links as text) and shown in a frame with every sandbox restriction —
 *  no script, an opaque origin, no navigation — under the portal's CSP, which the srcdoc
 *  document inherits.  The frame reads the portal's message-frame.css only. */
function messageBodies(item) {
  const text = h("section", { class: "message-body", "aria-labelledby": "body-text-title" },
    h("h3", { id: "body-text-title" }, item.body_html ? t("bodyText") : t("body")),
    h("pre", { class: "message", tabindex: "0" }, item.body_preview ?? ""));
  if (!item.body_html) return h("div", { class: "message-bodies" }, text);
  const notes = [t("htmlSafeNote")];
  if (item.html_images_hidden) notes.push(t("htmlImagesHidden", { n: item.html_images_hidden }));
  if (item.html_links_disarmed) notes.push(t("htmlLinksShown", { n: item.html_links_disarmed }));
  const doc = `<!doctype html><html lang="${document.documentElement.lang}"><head><meta charset="utf-8">`
    + `<link rel="stylesheet" href="message-frame.css"></head><body>${item.body_html}</body></html>`;
  const frame = h("iframe", {
    class: "message-html", sandbox: true, srcdoc: doc, referrerpolicy: "no-referrer",
    title: t("bodyHtmlFrame"),
  });
  return h("div", { class: "message-bodies has-html" }, text,
    h("section", { class: "message-body", "aria-labelledby": "body-html-title" },
      h("h3", { id: "body-html-title" }, t("bodyHtml")),
      h("p", { class: "help" }, notes.join(" ")), frame));
}
