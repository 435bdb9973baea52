// The settings table of the manual (001 L3922-3934): one row per address, virus check and
// overseas toggled with one click, links to every per-address form (SPEC §2).

import { api } from "./api.js";
import { t } from "./i18n.js";
import { focusFirst, h, heading } from "./ui.js";

const enc = encodeURIComponent;

/** "ON (2026/11/30 まで)" from the API's "ON until 2026/11/30" (date in the ISP's zone). */
export function overseasLabel(overseas) {
  if (!overseas.enabled) return t("off");
  const match = /(\d{4}\/\d{2}\/\d{2})/.exec(overseas.display || "");
  return t("onUntil", { date: match ? match[1] : "" });
}

async function toggle(view, event, focus, call) {
  event.currentTarget.disabled = true;
  let status = t("saved");
  try {
    await call();
  } catch (error) {
    status = t("errorGeneric", { message: error.message });
  }
  await renderTable(view, { focus, status });
}

function row(item, index, view) {
  const address = item.address;
  const virusState = item.virus_check ? t("on") : t("off");
  const virus = h("button", {
    type: "button", class: `toggle ${item.virus_check ? "is-on" : "is-off"}`,
    "aria-label": t("toggleVirus", { address, state: virusState }),
    "aria-pressed": item.virus_check ? "true" : "false",
    dataset: { action: "virus", address },
    onclick: (event) => toggle(view, event, `virus:${address}`,
      () => api.put(address, "virus-check", { enabled: !item.virus_check })),
  }, virusState);
  const overseasText = overseasLabel(item.overseas);
  const overseas = h("button", {
    type: "button", class: `toggle ${item.overseas.enabled ? "is-on" : "is-off"}`,
    "aria-label": t("toggleOverseas", { address, state: overseasText }),
    "aria-pressed": item.overseas.enabled ? "true" : "false",
    dataset: { action: "overseas", address },
    onclick: (event) => toggle(view, event, `overseas:${address}`,
      () => api.put(address, "overseas", { enabled: !item.overseas.enabled })),
  }, overseasText);
  const forwardState = item.forwarding.enabled ? t("on") : t("off");
  const cell = (label, ...content) => h("td", { "data-label": label }, ...content);
  return h("tr", { dataset: { address } },
    cell(t("colNo"), String(index + 1)),
    cell(t("colAddress"), h("span", { class: "address" }, address)),
    cell(t("colPop"), item.pop_account),
    cell(t("colStatus"), h("span", { class: `status status-${item.status}` }, t(`status_${item.status}`))),
    cell(t("colVirus"), virus),
    cell(t("colSpam"), h("a", { href: `#/spam/${enc(address)}`, "aria-label": t("spamFor", { address }) }, t("settings"))),
    cell(t("colForward"), h("a", {
      href: `#/forwarding/${enc(address)}`, "aria-label": t("forwardFor", { address, state: forwardState }),
      class: `toggle-link ${item.forwarding.enabled ? "is-on" : "is-off"}`,
    }, forwardState)),
    cell(t("colOverseas"), overseas),
    cell(t("colActions"), h("div", { class: "row-actions" },
      h("a", { href: `#/password/${enc(address)}`, class: "button small" }, t("changePassword")),
      h("a", { href: `#/reissue/${enc(address)}`, class: "button small" }, t("reissuePassword")),
      h("a", { href: `#/auto-reply/${enc(address)}`, class: "button small" }, t("autoReply")),
      h("a", { href: `#/quarantine/${enc(address)}`, class: "button small" }, t("quarantine")),
      h("a", { href: `#/delete/${enc(address)}`, class: "button small danger" }, t("delete")))));
}

export async function renderTable(view, options = {}) {
  const data = await api.addresses();
  const quota = data.quota;
  const columns = ["colNo", "colAddress", "colPop", "colStatus", "colVirus", "colSpam",
    "colForward", "colOverseas", "colActions"];
  const table = data.addresses.length
    ? h("div", { class: "table-wrap" }, h("table", { class: "addresses" },
      h("caption", { class: "visually-hidden" }, t("addressesTitle")),
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, t(c))))),
      h("tbody", {}, data.addresses.map((item, i) => row(item, i, view)))))
    : h("p", {}, t("noAddresses"));
  view.replaceChildren(
    heading(t("addressesTitle")),
    h("section", { class: "card counts", "aria-labelledby": "counts-title" },
      h("h3", { id: "counts-title" }, t("accountCounts")),
      h("dl", { class: "count-list" },
        h("div", {}, h("dt", {}, t("contracted")), h("dd", { id: "count-contracted" }, t("countUnit", { n: quota.contracted }))),
        h("div", {}, h("dt", {}, t("used")), h("dd", { id: "count-used" }, t("countUnit", { n: quota.used })))),
      h("a", { href: "#/new", class: "button primary" }, t("newAddress"))),
    h("p", { class: "help" }, t("tableHelp")),
    h("p", { class: "status-line", role: "status" }, options.status || ""),
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
