// 「パスワードをお忘れの方」 (SPEC §9a; 000 L69): reachable without signing in.  A contract
// holder gets a code at the contact address and sets a new contract password; a mailbox
// user is told that the contract holder reissues the mail password.  The answer to the
// first step never says whether the customer number exists (the server's neither).

import { api } from "./api.js";
import { t } from "./i18n.js";
import { go, replaceRoute } from "./router.js";
import { contractPasswordViolation, rules } from "./rules.js";
import { field, fill, focusFirst, formErrorBox, h, heading, onSubmit, showErrors, stepBar } from "./ui.js";

const KEY = "mp.recovery";

export function renderForgot(view) {
  fill(view, heading(t("forgotTitle")),
    h("section", { class: "card", "aria-labelledby": "forgot-contract" },
      h("h3", { id: "forgot-contract" }, t("forgotContractTitle")),
      h("p", {}, t("forgotContractText")),
      h("a", { href: "#/recovery", class: "button primary" }, t("forgotContractButton"))),
    h("section", { class: "card", "aria-labelledby": "forgot-mailbox" },
      h("h3", { id: "forgot-mailbox" }, t("forgotMailboxTitle")),
      h("p", {}, t("forgotMailboxText"))),
    h("div", { class: "actions" }, h("a", { href: "#/", class: "button" }, t("toSignIn"))));
  focusFirst(view);
}

export function renderRecovery(view, step = "") {
  const labels = [t("recStep1"), t("recStep2"), t("recStep3")];
  const show = (index, ...content) => {
    fill(view, heading(t("recoveryTitle")), stepBar(labels, index), ...content);
    focusFirst(view);
  };
  const customerNumber = sessionStorage.getItem(KEY) || "";

  if (step === "done") {
    sessionStorage.removeItem(KEY);
    show(2, h("div", { class: "card" },
      h("p", { class: "done-message", role: "status" }, t("recoveryDone")),
      h("div", { class: "actions" }, h("a", { href: "#/", class: "button primary" }, t("toSignIn")))));
    return;
  }

  if (step === "code" && customerNumber) {
    const code = h("input", { type: "text", inputmode: "numeric", autocomplete: "one-time-code", spellcheck: "false" });
    const next = h("input", { type: "password", autocomplete: "new-password" });
    const again = h("input", { type: "password", autocomplete: "new-password" });
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("codeSentHelp", { cn: customerNumber, minutes: rules().code_minutes })),
      field({ label: t("code"), control: code, name: "code", help: t("codeHelp") }),
      field({ label: t("newPassword"), control: next, name: "new_password", help: t("contractPasswordRules") }),
      field({ label: t("newPasswordAgain"), control: again, name: "new_again" }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("setPassword")),
        h("a", { href: "#/recovery", class: "button" }, t("back"))),
      h("p", { class: "help" }, h("a", { href: "#/recovery" }, t("resend"))));
    onSubmit(form, async () => {
      const errors = [];
      if (!code.value.trim()) errors.push({ field: "code", message: t("required") });
      const problem = next.value ? contractPasswordViolation(next.value, customerNumber) : t("required");
      if (problem) errors.push({ field: "new_password", message: problem });
      else if (next.value !== again.value) errors.push({ field: "new_again", message: t("passwordsDiffer") });
      if (errors.length) { showErrors(form, errors); return; }
      await api.finishRecovery({ customer_number: customerNumber, code: code.value, new_password: next.value });
      replaceRoute("#/recovery/done");
    });
    show(1, form);
    return;
  }

  const number = h("input", { type: "text", autocomplete: "username", spellcheck: "false", autocapitalize: "none", value: customerNumber });
  const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
    h("p", {}, t("recoveryHelp")),
    field({ label: t("contractNumber"), control: number, name: "customer_number", help: t("contractHelp") }),
    h("div", { class: "actions" },
      h("button", { type: "submit", class: "primary" }, t("sendCode")),
      h("a", { href: "#/forgot", class: "button" }, t("back"))));
  onSubmit(form, async () => {
    const value = number.value.trim();
    if (!value) { showErrors(form, [{ field: "customer_number", message: t("required") }]); return; }
    await api.startRecovery(value);
    sessionStorage.setItem(KEY, value.normalize("NFKC"));
    go("#/recovery/code");
  });
  if (step) replaceRoute("#/recovery", { silent: true });
  show(0, form);
}
