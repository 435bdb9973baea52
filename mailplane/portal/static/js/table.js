// The settings table of the manual (001 L3922-3934): one row per address with its state —
// status, virus check and overseas switched with one click, spam, forwarding, auto-reply,
// mailbox usage — and links to every per-address screen (SPEC §2).  A mailbox user sees
// only its own row and only what it may change (004 function table).

import { api, session } from "./api.js";
import { t } from "./i18n.js";
import { addressText, fill, focusFirst, h, heading, headingText, onOff, statusLine } from "./ui.js";
import { webmailNote } from "./webmail.js";

const enc = encodeURIComponent;

/** "ON (2026/11/30 まで)" from the API's "ON until 2026/11/30" (date in the ISP's zone). */
export function overseasLabel(overseas) {
  if (!overseas.enabled) return t("off");
  const match = /(\d{4}\/\d{2}\/\d{2})/.exec(overseas.display || "");
  return t("onUntil", { date: match ? match[1] : "" });
}

/** The same label in two unbreakable parts: "ON" and "(2026/11/30 まで)". */
function overseasParts(overseas) {
  const label = overseasLabel(overseas);
  const space = label.indexOf(" ");
  if (space < 0) return label;
  return [h("span", { class: "part" }, label.slice(0, space)), " ",
    h("span", { class: "part" }, label.slice(space + 1))];
}

export function sizeLabel(bytes) {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(bytes % 1024 ** 3 ? 1 : 0)} GB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MB`;
  if (bytes >= 1024) return `${Math.ceil(bytes / 1024)} KB`;
  return `${bytes} B`;
}

function usage(mailbox) {
  if (!mailbox) return "";
  const percent = mailbox.quota_bytes ? Math.min(100, Math.round((mailbox.used_bytes / mailbox.quota_bytes) * 100)) : 0;
  const label = t("usageLabel", { used: sizeLabel(mailbox.used_bytes), quota: sizeLabel(mailbox.quota_bytes), percent });
  return h("div", { class: "usage" },
    h("meter", { min: "0", max: String(mailbox.quota_bytes), value: String(mailbox.used_bytes),
      low: String(Math.round(mailbox.quota_bytes * 0.8)), high: String(Math.round(mailbox.quota_bytes * 0.9)),
      optimum: "0", "aria-label": label }),
    h("span", { class: "usage-text" }, label));
}

async function toggle(view, event, focus, call, status) {
  event.currentTarget.disabled = true;
  let message = status;
  try {
    await call();
  } catch (error) {
    if (error.status === 401) return;
    message = error.message;
  }
  await renderTable(view, { focus, status: message });
}

function row(item, index, view, contractSuspended) {
  const address = item.address;
  const admin = !session.isMailbox;
  const suspended = contractSuspended || item.status === "suspended";
  const status = suspended ? "suspended" : item.status;
  const virusState = onOff(item.virus_check);
  const virus = admin
    ? h("button", {
      type: "button", class: `toggle ${item.virus_check ? "is-on" : "is-off"}`,
      "aria-label": t("toggleVirus", { address, state: virusState }),
      "aria-pressed": item.virus_check ? "true" : "false",
      dataset: { action: "virus", address },
      onclick: (event) => toggle(view, event, `virus:${address}`,
        () => api.put(address, "virus-check", { enabled: !item.virus_check }),
        t("virusChanged", { address, state: onOff(!item.virus_check) })),
    }, virusState)
    : h("span", { class: `state ${item.virus_check ? "is-on" : "is-off"}` }, virusState);
  const overseasText = overseasLabel(item.overseas);
  const overseas = admin
    ? h("button", {
      type: "button", class: `toggle ${item.overseas.enabled ? "is-on" : "is-off"}`,
      "aria-label": t("toggleOverseas", { address, state: overseasText }),
      "aria-pressed": item.overseas.enabled ? "true" : "false",
      dataset: { action: "overseas", address },
      onclick: (event) => toggle(view, event, `overseas:${address}`,
        () => api.put(address, "overseas", { enabled: !item.overseas.enabled }),
        item.overseas.enabled ? t("overseasOff", { address }) : t("overseasOn", { address })),
    }, overseasParts(item.overseas))
    // A mailbox user abroad is told who can turn it on (004: the contract holder's switch).
    : h("span", { class: "overseas-state" },
      h("span", { class: `state ${item.overseas.enabled ? "is-on" : "is-off"}` }, overseasText),
      item.overseas.enabled ? null : h("span", { class: "hint" }, t("overseasAskHolder")));
  const forwardState = onOff(item.forwarding.enabled);
  const replyState = onOff(item.auto_reply_enabled);
  const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
  const link = (href, label, cls = "action") => h("a", { href, class: cls }, label);
  return h("tr", { dataset: { address } },
    cell(t("colNo"), String(index + 1)),
    h("th", { scope: "row", class: "address-cell", "data-label": t("colAddress") }, addressText(address)),
    cell(t("colPop"), h("span", { class: "nowrap" }, item.pop_account)),
    cell(t("colStatus"), h("span", { class: `status status-${status}` }, t(`status_${status}`))),
    cell(t("colVirus"), virus),
    cell(t("colSpam"), admin
      ? h("a", { href: `#/spam/${enc(address)}`, "aria-label": t("spamFor", { address }) }, t("settings"))
      : h("span", { class: "state" }, item.spam.judge ? t("on") : t("off"))),
    cell(t("colForward"), h("a", {
      href: `#/forwarding/${enc(address)}`, "aria-label": t("forwardFor", { address, state: forwardState }),
      class: `toggle-link ${item.forwarding.enabled ? "is-on" : "is-off"}`,
    }, forwardState)),
    cell(t("colAutoReply"), h("a", {
      href: `#/auto-reply/${enc(address)}`, "aria-label": t("autoReplyFor", { address, state: replyState }),
      class: `toggle-link ${item.auto_reply_enabled ? "is-on" : "is-off"}`,
    }, replyState)),
    cell(t("colOverseas"), overseas),
    cell(t("colMailbox"), usage(item.mailbox)),
    cell(t("colActions"), h("div", { class: "row-actions" },
      link(`#/setup/${enc(address)}`, t("clientSetup")),
      link(`#/password/${enc(address)}`, t("changePassword")),
      link(`#/reissue/${enc(address)}`, t("reissuePassword")),
      link(`#/quarantine/${enc(address)}`, t("quarantine")),
      admin ? link(`#/delete/${enc(address)}`, t("delete"), "action danger") : null)));
}

export async function renderTable(view, options = {}) {
  const [data, contract] = await Promise.all([api.addresses(), api.contract()]);
  const quota = data.quota;
  const suspended = contract.status === "suspended";
  const charges = data.charges || contract.charges;
  const columns = ["colNo", "colAddress", "colPop", "colStatus", "colVirus", "colSpam",
    "colForward", "colAutoReply", "colOverseas", "colMailbox", "colActions"];
  const table = data.addresses.length
    ? h("div", { class: "table-wrap" }, h("table", { class: "addresses" },
      h("caption", { class: "visually-hidden" }, t("addressesTitle")),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, headingText(t(c)))))),
      h("tbody", {}, data.addresses.map((item, i) => row(item, i, view, suspended)))))
    : h("p", {}, t("noAddresses"));
  const counts = session.isMailbox ? null : h("section", { class: "card counts", "aria-labelledby": "counts-title" },
    h("h3", { id: "counts-title" }, t("accountCounts")),
    h("dl", { class: "count-list" },
      h("div", {}, h("dt", {}, t("contracted")), h("dd", { id: "count-contracted" }, t("countUnit", { n: quota.contracted }),
        quota.extra ? h("span", { class: "extra-count" }, " ", t("extraCount", {
          n: quota.extra, yen: Number(charges.monthly_total_yen).toLocaleString("ja-JP") })) : null)),
      h("div", {}, h("dt", {}, t("used")), h("dd", { id: "count-used" }, t("countUnit", { n: quota.used })))),
    h("div", { class: "counts-actions" },
      suspended ? null : h("a", { href: "#/new", class: "button primary" }, t("newAddress")),
      h("a", { href: "#/account", class: "button" }, t("accountLink"))));
  fill(view, 
    heading(session.isMailbox ? t("mailboxTitle") : t("addressesTitle")),
    suspended ? h("p", { class: "caution", role: "note" }, t("contractSuspended")) : null,
    counts,
    h("p", { class: "help" }, session.isMailbox ? t("tableHelpMailbox") : t("tableHelp")),
    session.isMailbox ? h("p", { class: "help" }, t("overseasMailboxHelp")) : null,
    webmailNote("webmailOverseas"),
    statusLine(options.status),
    table);
  if (options.focus) {
    const [action, address] = options.focus.split(/:(.*)/s);
    const button = [...view.querySelectorAll("button.toggle")]
      .find((b) => b.dataset.action === action && b.dataset.address === address);
    if (button) {
      button.focus();
      return;
    }
  }
  focusFirst(view);
}
