// The contract holder's own account (SPEC §9a; 004 function table: 契約情報の変更 and
// 料金明細照会 are the contract holder's, never a mailbox user's): the contract menu, the
// contract password, the contact address in the seed's four steps (000 L60-L200:
// 変更内容の入力 → 認証コード入力 → 変更内容の確認 → 変更完了), 料金明細 (004 L474-485) and
// the 解約 request (003 Art.18).

import { api, ApiError, session } from "./api.js";
import { t } from "./i18n.js";
import { go, replaceRoute } from "./router.js";
import { contractPasswordViolation, emailViolation, rules } from "./rules.js";
import { addressText, caution, field, fill, focusFirst, formErrorBox, h, heading, nextId, onSubmit, settingsFlow, showErrors, stepBar, summary } from "./ui.js";

const yen = (n) => t("yen", { n: Number(n).toLocaleString("ja-JP") });

export async function renderAccount(view) {
  const contract = await api.contract();
  const pending = contract.termination && contract.termination.last_day;
  const item = (title, description, href, label, extra) => h("li", { class: "card menu-item" },
    h("h3", {}, title), h("p", {}, description), extra || null,
    h("a", { href, class: "button" }, `${label} >`));
  fill(view, heading(t("accountTitle")),
    h("div", { class: "card" }, summary([
      [t("customerNumber"), contract.customer_number],
      [t("contactEmail"), addressText(contract.contact_email)],
      [t("billingNow"), t("billingNowValue", { n: contract.quota.extra,
        yen: Number(contract.charges.monthly_total_yen).toLocaleString("ja-JP") })],
    ])),
    pending ? h("p", { class: "notice", role: "status" }, t("terminationPending", { date: pending })) : null,
    h("ul", { class: "menu" },
      item(t("contactEmail"), t("contactEmailDesc"), "#/contact", t("changeContact")),
      item(t("contractPassword"), t("contractPasswordDesc"), "#/contract-password", t("changeContractPassword")),
      item(t("billingTitle"), t("billingDesc"), "#/billing", t("showBilling")),
      item(t("terminateTitle"), t("terminateDesc"), "#/terminate", t("terminateLink"))),
    h("a", { href: "#/", class: "button" }, t("toMenu")));
  focusFirst(view);
}

export function renderContractPassword(view, step) {
  const current = h("input", { type: "password", autocomplete: "current-password" });
  const next = h("input", { type: "password", autocomplete: "new-password" });
  const again = h("input", { type: "password", autocomplete: "new-password" });
  settingsFlow(view, {
    title: t("cpTitle"), help: t("cpHelp"), base: "#/contract-password", step,
    persist: false, current: {},
    labels: [t("step_input"), t("step_confirm"), t("step_changed")],
    build(form, values) {
      current.value = values.current || "";
      next.value = values.new || "";
      again.value = values.new || "";
      form.append(summary([[t("customerNumber"), session.contract]]),
        field({ label: t("currentPassword"), control: current, name: "current" }),
        field({ label: t("newPassword"), control: next, name: "new", help: t("contractPasswordRules") }),
        field({ label: t("newPasswordAgain"), control: again, name: "new_again" }));
    },
    collect() {
      const errors = [];
      if (!current.value) errors.push({ field: "current", message: t("required") });
      const problem = next.value ? contractPasswordViolation(next.value, session.contract) : t("required");
      if (problem) errors.push({ field: "new", message: problem });
      else if (next.value !== again.value) errors.push({ field: "new_again", message: t("passwordsDiffer") });
      return { body: { current: current.value, new: next.value }, errors };
    },
    rows: (body) => [[t("customerNumber"), session.contract], [t("newPassword"), t("passwordHidden")],
      ...(body.changed_on ? [[t("changedOn"), body.changed_on]] : [])],
    save: (body) => api.changeContractPassword(body),
    done: t("cpDone"),
    backHref: "#/account", backLabel: t("toAccount"),
  });
}

// --- the contact address: four steps, each at its own URL --------------------------------

const CONTACT_KEY = "mp.contact";

export async function renderContact(view, step = "") {
  const labels = [t("conStep1"), t("conStep2"), t("conStep3"), t("conStep4")];
  const state = JSON.parse(sessionStorage.getItem(CONTACT_KEY) || "{}");
  const show = (index, ...content) => {
    fill(view, heading(t("contactTitle")), stepBar(labels, index), ...content);
    focusFirst(view);
  };

  if (step === "done") {
    show(3, h("div", { class: "card" },
      h("p", { class: "done-message", role: "status" }, t("contactDone")),
      summary([[t("contactEmail"), addressText(state.done || "")]]),
      h("div", { class: "actions" }, h("a", { href: "#/account", class: "button primary" }, t("toAccount")))));
    sessionStorage.removeItem(CONTACT_KEY);
    return;
  }
  if (step === "confirm" && state.email && state.code) {
    const box = formErrorBox();
    const save = h("button", { type: "button", class: "primary", "data-action": "save" }, t("register"));
    save.addEventListener("click", async () => {
      save.disabled = true;
      try {
        const changed = await api.confirmContactChange(state.code);
        sessionStorage.setItem(CONTACT_KEY, JSON.stringify({ done: changed.contact_email }));
        replaceRoute("#/contact/done");
      } catch (error) {
        save.disabled = false;
        if (!(error instanceof ApiError)) throw error;
        if (error.status === 401) return;
        box.textContent = error.message;
        box.hidden = false;
        box.focus();
      }
    });
    show(2, h("div", { class: "card" }, box,
      h("p", {}, t("formConfirmHelp")),
      summary([[t("currentContact"), addressText(state.old || "")], [t("newContact"), addressText(state.email)]]),
      h("div", { class: "actions" }, save, h("a", { href: "#/contact/code", class: "button" }, t("back")))));
    return;
  }
  if ((step === "code" || step === "confirm") && state.email) {
    const code = h("input", { type: "text", inputmode: "numeric", autocomplete: "one-time-code", spellcheck: "false" });
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("contactCodeHelp", { address: state.email, minutes: rules().code_minutes })),
      field({ label: t("code"), control: code, name: "code", help: t("codeHelp") }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("next")),
        h("a", { href: "#/contact", class: "button" }, t("back"))),
      h("p", { class: "help" }, h("a", { href: "#/contact" }, t("resendCode"))));
    onSubmit(form, async () => {
      if (!code.value.trim()) { showErrors(form, [{ field: "code", message: t("required") }]); return; }
      await api.checkContactCode(code.value);
      sessionStorage.setItem(CONTACT_KEY, JSON.stringify({ ...state, code: code.value }));
      go("#/contact/confirm");
    });
    if (step !== "code") replaceRoute("#/contact/code", { silent: true });
    show(1, form);
    return;
  }

  const contract = await api.contract();
  const email = h("input", { type: "email", autocomplete: "email", spellcheck: "false", autocapitalize: "none", value: state.email || "" });
  const again = h("input", { type: "email", autocomplete: "email", spellcheck: "false", autocapitalize: "none", value: state.email || "" });
  const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
    h("p", {}, t("contactHelp")),
    summary([[t("currentContact"), addressText(contract.contact_email)]]),
    field({ label: t("newContact"), control: email, name: "contact_email", help: t("contactNote") }),
    field({ label: t("newContactAgain"), control: again, name: "contact_again" }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("confirm")),
      h("a", { href: "#/account", class: "button" }, t("back"))));
  onSubmit(form, async () => {
    const value = email.value.trim();
    const problem = value ? emailViolation(value) : t("required");
    if (problem) { showErrors(form, [{ field: "contact_email", message: problem }]); return; }
    if (value !== again.value.trim()) { showErrors(form, [{ field: "contact_again", message: t("contactsDiffer") }]); return; }
    const sent = await api.startContactChange(value);
    sessionStorage.setItem(CONTACT_KEY, JSON.stringify({ email: sent.sent_to, old: contract.contact_email }));
    go("#/contact/code");
  });
  if (step) replaceRoute("#/contact", { silent: true });
  show(0, form);
}

// --- 料金明細 ----------------------------------------------------------------------------

export async function renderBilling(view) {
  const data = await api.billing();
  const row = (month) => {
    const lines = month.lines.map((line) => h("li", {},
      t("billingLine", { address: line.address || t("slotWithoutAddress"), yen: Number(line.monthly_yen).toLocaleString("ja-JP") }),
      h("span", { class: "help" }, " (", t("billingBought", { date: line.purchased_on }),
        line.ended_on ? ` / ${t("billingEnded", { date: line.ended_on })}` : "", ")")));
    return h("tr", { dataset: { month: month.month } },
      h("th", { scope: "row", "data-label": t("billingMonth") },
        month.current ? t("billingCurrent", { month: month.month }) : month.month),
      h("td", { "data-label": t("billingAmount"), class: "amount" }, yen(month.total_yen)),
      h("td", { "data-label": t("billingDetail") },
        lines.length ? h("ul", { class: "plain-list" }, lines) : t("billingNone")));
  };
  fill(view, heading(t("billingTitle")),
    h("div", { class: "card" },
      summary([[t("customerNumber"), data.customer_number],
        [t("billingNow"), t("billingNowValue", { n: data.extra, yen: Number(data.monthly_total_yen).toLocaleString("ja-JP") })]]),
      h("p", { class: "help" }, t("billingHelp", { included: data.included, yen: data.extra_monthly_yen }))),
    caution(t("billingRules")),
    h("div", { class: "table-wrap" }, h("table", { class: "billing" },
      h("caption", { class: "visually-hidden" }, t("billingTitle")),
      h("thead", {}, h("tr", {}, [t("billingMonth"), t("billingAmount"), t("billingDetail")]
        .map((label) => h("th", { scope: "col" }, label)))),
      h("tbody", {}, data.months.map(row)))),
    h("div", { class: "actions" }, h("a", { href: "#/account", class: "button" }, t("toAccount"))));
  focusFirst(view);
}

// --- 解約 (003 Art.18) ----------------------------------------------------------------------

export async function renderTerminate(view, step) {
  const options = await api.terminationOptions();
  const pending = options.termination && options.termination.last_day;
  if (pending && step !== "done") {
    const box = formErrorBox();
    const withdraw = h("button", { type: "button", class: "danger", "data-action": "withdraw" }, t("withdraw"));
    withdraw.addEventListener("click", async () => {
      withdraw.disabled = true;
      try {
        await api.withdrawTermination();
        fill(view, heading(t("terminateTitle")),
          h("div", { class: "card" }, h("p", { class: "done-message", role: "status" }, t("withdrawn")),
            h("a", { href: "#/account", class: "button primary" }, t("toAccount"))));
        focusFirst(view);
      } catch (error) {
        withdraw.disabled = false;
        if (error.status === 401) return;
        box.textContent = error.message;
        box.hidden = false;
      }
    });
    fill(view, heading(t("terminateTitle")),
      h("div", { class: "card" }, box,
        h("p", { class: "notice", role: "status" }, t("terminationPending", { date: pending })),
        h("div", { class: "actions" }, withdraw, h("a", { href: "#/account", class: "button" }, t("toAccount")))));
    focusFirst(view);
    return;
  }
  const name = nextId("last-day");
  const radios = options.dates.map((date) => h("input", { type: "radio", name, value: date, id: nextId("day") }));
  const password = h("input", { type: "password", autocomplete: "current-password" });
  settingsFlow(view, {
    title: t("terminateTitle"), help: t("terminateHelp", { days: options.notice_days }),
    notes: caution(t("terminateCaution", { dataDays: options.data_days, cooloff: options.cooloff_days })),
    base: "#/terminate", step, persist: false, current: {},
    labels: [t("tStep1"), t("tStep2"), t("tStep3")], saveLabel: t("apply"),
    confirmHelp: t("terminateConfirm"),
    build(form, values) {
      for (const radio of radios) radio.checked = radio.value === values.last_day;
      password.value = values.password || "";
      form.append(
        h("fieldset", {}, h("legend", {}, t("terminateDate")),
          h("div", { class: "candidates", "data-field": "last_day", id: `${name}-group`, tabindex: "-1" },
            radios.map((radio) => h("div", { class: "candidate" }, radio, h("label", { for: radio.id }, radio.value)))),
          h("ul", { class: "field-error", id: `${name}-group-error`, hidden: true })),
        field({ label: t("terminatePassword"), control: password, name: "password", help: t("terminatePasswordHelp") }));
    },
    collect() {
      const chosen = radios.find((radio) => radio.checked);
      const errors = [];
      if (!chosen) errors.push({ field: "last_day", message: t("chooseDate") });
      if (!password.value) errors.push({ field: "password", message: t("required") });
      return { body: { last_day: chosen ? chosen.value : "", password: password.value }, errors };
    },
    rows: (body) => [[t("customerNumber"), session.contract],
      [t("terminateDate"), body.last_day || (body.termination && body.termination.last_day) || ""]],
    save: (body) => api.requestTermination(body),
    done: t("terminateDone", { date: pending || "" }),
    backHref: "#/account", backLabel: t("toAccount"),
  });
}
