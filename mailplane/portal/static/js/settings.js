// Per-address settings forms (SPEC §4-§6): spam check, deny list, allow list, forwarding,
// auto-reply.  Each follows the manual's input → confirm → done and PUTs the whole setting.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { field, focusFirst, h, heading, linesOf, multiline, nextId, onOff, radioPair, settingsFlow } from "./ui.js";

const enc = encodeURIComponent;
const CONDITIONS = ["no_from", "angle_from", "blank_from", "no_subject", "blank_subject"];

export function renderSpamMenu(view, address) {
  const item = (title, description, href) => h("li", { class: "card menu-item" },
    h("h3", {}, title), h("p", {}, description),
    h("a", { href, class: "button" }, `${title} >`));
  view.replaceChildren(heading(t("spamMenuTitle")), h("p", { class: "subtitle" }, address),
    h("ul", { class: "menu" },
      item(t("spamCheck"), t("spamCheckDesc"), `#/spam-check/${enc(address)}`),
      item(t("denyList"), t("denyDesc"), `#/deny/${enc(address)}`),
      item(t("allowList"), t("allowDesc"), `#/allow/${enc(address)}`),
      item(t("quarantine"), t("quarantineDesc"), `#/quarantine/${enc(address)}`)),
    h("a", { href: "#/", class: "button" }, t("toMenu")));
  focusFirst(view);
}

function switchControl(checked) {
  return h("input", { type: "checkbox", role: "switch", checked });
}

export async function renderSpam(view, address) {
  const current = await api.get(address, "spam");
  const judge = switchControl(current.judge);
  const quarantine = switchControl(current.quarantine);
  const notify = switchControl(current.notify);
  // SPEC §4: quarantine and notify only while judge is ON; judge OFF turns them OFF.
  const applyRule = () => {
    for (const dependent of [quarantine, notify]) {
      dependent.disabled = !judge.checked;
      if (!judge.checked) dependent.checked = false;
    }
  };
  judge.addEventListener("change", applyRule);
  const rows = (body) => [
    [t("judgeName"), `${t("judge")}: ${onOff(body.judge)}`],
    [t("quarantineName"), `${t("quarantineSwitch")}: ${onOff(body.quarantine)}`],
    [t("notifyName"), `${t("notify")}: ${onOff(body.notify)}`],
  ];
  settingsFlow(view, {
    title: t("spamTitle"), subtitle: address, help: t("spamHelp"),
    build(form) {
      form.append(
        h("fieldset", {}, h("legend", {}, t("judgeName")), field({ label: t("judge"), control: judge, name: "judge" })),
        h("fieldset", {}, h("legend", {}, t("quarantineName")), field({ label: t("quarantineSwitch"), control: quarantine, name: "quarantine" })),
        h("fieldset", {}, h("legend", {}, t("notifyName")), field({ label: t("notify"), control: notify, name: "notify" })),
        h("p", { class: "help" }, t("needsJudge")));
      applyRule();
    },
    collect: () => ({ body: { judge: judge.checked, quarantine: quarantine.checked, notify: notify.checked } }),
    rows,
    save: (body) => api.put(address, "spam", body),
    backHref: `#/spam/${enc(address)}`, backLabel: t("toSpamMenu"),
  });
}

function textarea(values, rows = 6) {
  const node = h("textarea", { rows: String(rows), spellcheck: "false", autocapitalize: "none" });
  node.value = values.join("\n");
  return node;
}

export async function renderDeny(view, address) {
  const current = await api.get(address, "deny-list");
  const addresses = textarea(current.addresses);
  const subjects = textarea(current.subjects);
  const conditions = Object.fromEntries(CONDITIONS.map((name) =>
    [name, h("input", { type: "checkbox", checked: current.conditions[name] })]));
  const rows = (body) => [
    [t("denyAddresses"), multiline(body.addresses)],
    [t("denySubjects"), multiline(body.subjects)],
    [t("denyConditions"), h("ul", { class: "plain-list" }, CONDITIONS.map((name) =>
      h("li", {}, `${t(`cond_${name}`)}: ${body.conditions[name] ? t("deny") : t("dontDeny")}`)))],
  ];
  settingsFlow(view, {
    title: t("denyList"), subtitle: t("mailboxOf", { address }),
    build(form) {
      form.append(
        field({ label: t("denyAddresses"), control: addresses, name: "addresses", help: t("denyAddressesHelp") }),
        field({ label: t("denySubjects"), control: subjects, name: "subjects", help: t("denySubjectsHelp") }),
        h("fieldset", { class: "conditions" }, h("legend", {}, t("denyConditions")),
          CONDITIONS.map((name) => field({ label: `${t(`cond_${name}`)}: ${t("deny")}`, control: conditions[name], name: `conditions.${name}` }))));
    },
    collect: () => ({
      body: {
        addresses: linesOf(addresses),
        subjects: linesOf(subjects),
        conditions: Object.fromEntries(CONDITIONS.map((name) => [name, conditions[name].checked])),
      },
    }),
    rows,
    save: (body) => api.put(address, "deny-list", body),
    backHref: `#/spam/${enc(address)}`, backLabel: t("toSpamMenu"),
  });
}

export async function renderAllow(view, address) {
  const current = await api.get(address, "allow-list");
  const addresses = textarea(current.addresses);
  settingsFlow(view, {
    title: t("allowList"), subtitle: t("mailboxOf", { address }),
    build(form) {
      form.append(field({ label: t("allowAddresses"), control: addresses, name: "addresses", help: t("allowAddressesHelp") }));
    },
    collect: () => ({ body: { addresses: linesOf(addresses) } }),
    rows: (body) => [[t("allowAddresses"), multiline(body.addresses)]],
    save: (body) => api.put(address, "allow-list", body),
    backHref: `#/spam/${enc(address)}`, backLabel: t("toSpamMenu"),
  });
}

export async function renderForwarding(view, address) {
  const current = await api.get(address, "forwarding");
  const inputs = [0, 1, 2].map((i) => h("input", {
    type: "email", value: current.destinations[i] || "", autocomplete: "off", spellcheck: "false",
  }));
  const keep = radioPair({ legend: t("keepCopy"), name: nextId("keep"), yes: t("keep"), no: t("dontKeep"),
    value: current.keep_copy, field: "keep_copy" });
  const rows = (body) => [
    ...[0, 1, 2].map((i) => [t("destination", { n: i + 1 }), body.destinations.filter(Boolean)[i] || ""]),
    [t("keepCopy"), body.keep_copy ? t("keep") : t("dontKeep")],
  ];
  settingsFlow(view, {
    title: t("forwardTitle"), subtitle: t("mailboxOf", { address }), help: t("forwardHelp"),
    build(form) {
      form.append(...inputs.map((input, i) =>
        field({ label: t("destination", { n: i + 1 }), control: input, name: `destinations[${i}]` })),
      keep.node, h("p", { class: "help" }, t("keepWarning")));
    },
    // All three are sent (blanks included) so error.field destinations[i] is input i.
    collect: () => ({ body: { destinations: inputs.map((input) => input.value.trim()), keep_copy: keep.get() } }),
    rows,
    save: (body) => api.put(address, "forwarding", body),
    backHref: "#/", backLabel: t("toMenu"),
  });
}

export async function renderAutoReply(view, address) {
  const current = await api.get(address, "auto-reply");
  const senders = textarea(current.special_senders, 4);
  const special = textarea([current.special_message], 4);
  const fallback = textarea([current.default_message], 4);
  const enabled = h("input", { type: "checkbox", checked: current.enabled });
  const rows = (body) => [
    [t("specialSenders"), multiline(body.special_senders)],
    [t("specialMessage"), h("pre", { class: "message" }, body.special_message)],
    [t("defaultMessage"), h("pre", { class: "message" }, body.default_message)],
    [t("enabledShort"), body.enabled ? t("valid") : t("invalid")],
  ];
  settingsFlow(view, {
    title: t("autoReplyTitle"), subtitle: address, help: t("autoReplyHelp"),
    build(form) {
      form.append(
        field({ label: t("specialSenders"), control: senders, name: "special_senders", help: t("specialSendersHelp") }),
        field({ label: t("specialMessage"), control: special, name: "special_message" }),
        field({ label: t("defaultMessage"), control: fallback, name: "default_message" }),
        field({ label: t("enabled"), control: enabled, name: "enabled" }));
    },
    collect: () => ({
      body: {
        enabled: enabled.checked, special_senders: linesOf(senders),
        special_message: special.value, default_message: fallback.value,
      },
    }),
    rows,
    save: (body) => api.put(address, "auto-reply", body),
    backHref: "#/", backLabel: t("toMenu"),
  });
}
