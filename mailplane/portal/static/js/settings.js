// Per-address settings forms (SPEC §4-§6): spam check, deny list, allow list, forwarding,
// auto-reply.  Each follows the manual's input → confirm → done, checks its input in the
// browser with the API's own rules (every error at once) and PUTs the whole setting.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { addressListErrors, autoReplyErrors, forwardingErrors, normaliseAddressEntry, normaliseSubjectEntry,
  rules, subjectKey, subjectListErrors, typedAddress } from "./rules.js";
import { caution, field, fill, focusFirst, h, heading, linesOf, multiline, nextId, onOff, radioPair, settingsFlow } from "./ui.js";

const enc = encodeURIComponent;
const CONDITIONS = ["no_from", "angle_from", "blank_from", "no_subject", "blank_subject"];

export function renderSpamMenu(view, address) {
  const item = (title, description, href) => h("li", { class: "card menu-item" },
    h("h3", {}, title), h("p", {}, description),
    h("a", { href, class: "button" }, `${title} >`));
  fill(view, heading(t("spamMenuTitle")), h("p", { class: "subtitle" }, address),
    h("ul", { class: "menu" },
      item(t("spamCheck"), t("spamCheckDesc"), `#/spam-check/${enc(address)}`),
      item(t("denyList"), t("denyDesc"), `#/deny/${enc(address)}`),
      item(t("allowList"), t("allowDesc"), `#/allow/${enc(address)}`),
      item(t("quarantine"), t("quarantineDesc", { days: rules().quarantine_days }), `#/quarantine/${enc(address)}`)),
    h("a", { href: "#/", class: "button" }, t("toMenu")));
  focusFirst(view);
}

function switchControl(checked) {
  return h("input", { type: "checkbox", role: "switch", checked });
}

export async function renderSpam(view, address, step) {
  const current = await api.get(address, "spam");
  const judge = switchControl(false);
  const quarantine = switchControl(false);
  const notify = switchControl(false);
  // SPEC §4: quarantine and notify only while judge is ON; judge OFF turns them OFF.
  const applyRule = () => {
    for (const dependent of [quarantine, notify]) {
      dependent.disabled = !judge.checked;
      if (!judge.checked) dependent.checked = false;
    }
  };
  judge.addEventListener("change", applyRule);
  settingsFlow(view, {
    title: t("spamTitle"), subtitle: address, help: t("spamHelp"),
    notes: caution(t("spamCaution", { days: rules().quarantine_days })),
    base: `#/spam-check/${enc(address)}`, step, current,
    build(form, values) {
      judge.checked = values.judge;
      quarantine.checked = values.quarantine;
      notify.checked = values.notify;
      form.append(
        h("fieldset", {}, h("legend", {}, t("judgeName")), field({ label: t("judge"), control: judge, name: "judge" })),
        h("fieldset", {}, h("legend", {}, t("quarantineName")), field({ label: t("quarantineSwitch"), control: quarantine, name: "quarantine" })),
        h("fieldset", {}, h("legend", {}, t("notifyName")), field({ label: t("notify"), control: notify, name: "notify" })),
        h("p", { class: "help" }, t("needsJudge")));
      applyRule();
    },
    collect: () => ({ body: { judge: judge.checked, quarantine: quarantine.checked, notify: notify.checked } }),
    rows: (body) => [
      [t("judgeName"), `${t("judge")}: ${onOff(body.judge)}`],
      [t("quarantineName"), `${t("quarantineSwitch")}: ${onOff(body.quarantine)}`],
      [t("notifyName"), `${t("notify")}: ${onOff(body.notify)}`],
    ],
    save: (body) => api.put(address, "spam", body),
    done: t("spamSaved", { address }),
    backHref: `#/spam/${enc(address)}`, backLabel: t("toSpamMenu"),
  });
}

/** A list as the server stores it (normalised, blanks and repeats dropped): what the
 *  confirm step shows is what the done step will show. */
function cleaned(values, normalise, key = (entry) => entry) {
  const seen = new Set();
  return values.map(normalise).filter((entry) => {
    if (!entry || seen.has(key(entry))) return false;
    seen.add(key(entry));
    return true;
  });
}

function textarea(rows = 6) {
  return h("textarea", { rows: String(rows), spellcheck: "false", autocapitalize: "none" });
}

export async function renderDeny(view, address, step) {
  const current = await api.get(address, "deny-list");
  const addresses = textarea();
  const subjects = textarea();
  const conditions = Object.fromEntries(CONDITIONS.map((name) => [name, h("input", { type: "checkbox" })]));
  settingsFlow(view, {
    title: t("denyList"), subtitle: t("mailboxOf", { address }),
    notes: caution(t("denyStandardNote")),
    base: `#/deny/${enc(address)}`, step, current,
    build(form, values) {
      addresses.value = values.addresses.join("\n");
      subjects.value = values.subjects.join("\n");
      for (const name of CONDITIONS) conditions[name].checked = values.conditions[name];
      form.append(
        field({ label: t("denyAddresses"), control: addresses, name: "addresses", help: t("denyAddressesHelp") }),
        field({ label: t("denySubjects"), control: subjects, name: "subjects", help: t("denySubjectsHelp") }),
        h("fieldset", { class: "conditions" }, h("legend", {}, t("denyConditions")),
          CONDITIONS.map((name) => field({ label: `${t(`cond_${name}`)}: ${t("deny")}`, control: conditions[name], name: `conditions.${name}` }))));
    },
    collect() {
      const body = {
        addresses: linesOf(addresses),
        subjects: linesOf(subjects),
        conditions: Object.fromEntries(CONDITIONS.map((name) => [name, conditions[name].checked])),
      };
      const errors = [...addressListErrors("addresses", body.addresses), ...subjectListErrors("subjects", body.subjects)];
      if (!errors.length) {
        body.addresses = cleaned(body.addresses, normaliseAddressEntry);
        body.subjects = cleaned(body.subjects, normaliseSubjectEntry, subjectKey);
      }
      return { body, errors };
    },
    rows: (body) => [
      [t("denyAddresses"), multiline(body.addresses)],
      [t("denySubjects"), multiline(body.subjects)],
      [t("denyConditions"), h("ul", { class: "plain-list" }, CONDITIONS.map((name) =>
        h("li", {}, `${t(`cond_${name}`)}: ${body.conditions[name] ? t("deny") : t("dontDeny")}`)))],
    ],
    save: (body) => api.put(address, "deny-list", body),
    done: t("denySaved", { address }),
    backHref: `#/spam/${enc(address)}`, backLabel: t("toSpamMenu"),
  });
}

export async function renderAllow(view, address, step) {
  const current = await api.get(address, "allow-list");
  const addresses = textarea();
  settingsFlow(view, {
    title: t("allowList"), subtitle: t("mailboxOf", { address }),
    base: `#/allow/${enc(address)}`, step, current,
    build(form, values) {
      addresses.value = values.addresses.join("\n");
      form.append(field({ label: t("allowAddresses"), control: addresses, name: "addresses", help: t("allowAddressesHelp") }));
    },
    collect() {
      const body = { addresses: linesOf(addresses) };
      const errors = addressListErrors("addresses", body.addresses);
      if (!errors.length) body.addresses = cleaned(body.addresses, normaliseAddressEntry);
      return { body, errors };
    },
    rows: (body) => [[t("allowAddresses"), multiline(body.addresses)]],
    save: (body) => api.put(address, "allow-list", body),
    done: t("allowSaved", { address }),
    backHref: `#/spam/${enc(address)}`, backLabel: t("toSpamMenu"),
  });
}

export async function renderForwarding(view, address, step) {
  const current = await api.get(address, "forwarding");
  const count = rules().forwarding.max_destinations;
  const inputs = Array.from({ length: count }, () => h("input", { type: "email", autocomplete: "off", spellcheck: "false" }));
  const keep = radioPair({ legend: t("keepCopy"), name: nextId("keep"), yes: t("keep"), no: t("dontKeep"),
    value: true, field: "keep_copy" });
  settingsFlow(view, {
    title: t("forwardTitle"), subtitle: t("mailboxOf", { address }), help: t("forwardHelp", { n: count }),
    // The manual's caveats (L4406-4409) and the inbox's retention (L4462, as configured).
    notes: h("div", { class: "notes", role: "note" }, h("strong", {}, t("forwardNotes")),
      h("ul", {}, h("li", {}, t("forwardBounceNote")), h("li", {}, t("forwardQuarantineNote")),
        h("li", {}, t("forwardRetentionNote", { days: rules().inbox_days })))),
    base: `#/forwarding/${enc(address)}`, step, current,
    build(form, values) {
      inputs.forEach((input, i) => { input.value = values.destinations[i] || ""; });
      keep.set(values.keep_copy);
      form.append(...inputs.map((input, i) =>
        field({ label: t("destination", { n: i + 1 }), control: input, name: `destinations[${i}]` })),
      keep.node, caution(t("keepWarning")));
    },
    // Every field is sent (blanks included) so error.field destinations[i] is input i.
    collect() {
      const body = { destinations: inputs.map((input) => input.value), keep_copy: keep.get() };
      return { body, errors: forwardingErrors(body.destinations, address) };
    },
    rows: (body) => {
      // As the server stores them (全角 folded): the confirm step shows the saved value.
      const set = body.destinations.map((d) => {
        const typed = typedAddress(d);
        const at = typed.lastIndexOf("@");
        return at < 0 ? typed : `${typed.slice(0, at)}@${typed.slice(at + 1).toLowerCase()}`;
      }).filter(Boolean);
      return [
        ...inputs.map((_, i) => [t("destination", { n: i + 1 }), set[i] || ""]),
        [t("keepCopy"), body.keep_copy ? t("keep") : t("dontKeep")],
        ...(set.length ? [] : [[t("colForward"), t("forwardOff")]]),
      ];
    },
    save: (body) => api.put(address, "forwarding", body),
    done: t("forwardSaved", { address }),
    backHref: "#/", backLabel: t("toMenu"),
  });
}

export async function renderAutoReply(view, address, step) {
  const current = await api.get(address, "auto-reply");
  const senders = textarea(4);
  const special = textarea(4);
  const fallback = textarea(4);
  const enabled = h("input", { type: "checkbox" });
  settingsFlow(view, {
    title: t("autoReplyTitle"), subtitle: address, help: t("autoReplyHelp"),
    base: `#/auto-reply/${enc(address)}`, step, current,
    build(form, values) {
      senders.value = values.special_senders.join("\n");
      special.value = values.special_message;
      fallback.value = values.default_message;
      enabled.checked = values.enabled;
      form.append(
        field({ label: t("specialSenders"), control: senders, name: "special_senders", help: t("specialSendersHelp") }),
        field({ label: t("specialMessage"), control: special, name: "special_message" }),
        field({ label: t("defaultMessage"), control: fallback, name: "default_message", help: t("defaultMessageHelp") }),
        field({ label: t("enabled"), control: enabled, name: "enabled" }));
    },
    collect() {
      const body = {
        enabled: enabled.checked, special_senders: linesOf(senders),
        special_message: special.value, default_message: fallback.value,
      };
      return { body, errors: autoReplyErrors(body) };
    },
    rows: (body) => [
      [t("specialSenders"), multiline(body.special_senders)],
      [t("specialMessage"), h("pre", { class: "message" }, body.special_message)],
      [t("defaultMessage"), h("pre", { class: "message" }, body.default_message)],
      [t("enabledShort"), body.enabled ? t("valid") : t("invalid")],
    ],
    save: (body) => api.put(address, "auto-reply", body),
    done: t("autoReplySaved", { address }),
    backHref: "#/", backLabel: t("toMenu"),
  });
}
