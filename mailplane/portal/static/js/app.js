// Entry point: sign-in like My Page (customer number or mail address), the route table
// with each screen's rights and title, and the page chrome (language, sign-out).

import { api, ApiError, session, whenExpired } from "./api.js";
import { applyStatic, lang, setLang, t } from "./i18n.js";
import { currentRoute, go, setRenderer } from "./router.js";
import { setRules } from "./rules.js";
import { renderTable } from "./table.js";
import { renderWizard } from "./wizard.js";
import { renderSpamMenu, renderSpam, renderDeny, renderAllow, renderForwarding, renderAutoReply } from "./settings.js";
import { renderPassword, renderReissue, renderDelete } from "./passwords.js";
import { renderQuarantine } from "./quarantine.js";
import { renderSetup } from "./setup.js";
import { renderAccount, renderBilling, renderContact, renderContractPassword, renderTerminate } from "./account.js";
import { renderForgot, renderRecovery } from "./recovery.js";
import { clearErrors, failure, field, fill, focusFirst, formErrorBox, h, heading, showApiError, showErrors } from "./ui.js";

const view = document.getElementById("view");

// `contract`: only for contract holders; a mailbox user never sees these (SPEC §10, 004).
const ROUTES = {
  "": { render: renderTable },
  new: { render: renderWizard, contract: true },
  spam: { render: renderSpamMenu, contract: true },
  "spam-check": { render: renderSpam, contract: true },
  deny: { render: renderDeny, contract: true },
  allow: { render: renderAllow, contract: true },
  forwarding: { render: renderForwarding },
  "auto-reply": { render: renderAutoReply },
  password: { render: renderPassword },
  reissue: { render: renderReissue },
  delete: { render: renderDelete, contract: true },
  quarantine: { render: renderQuarantine },
  setup: { render: renderSetup },
  account: { render: renderAccount, contract: true },
  "contract-password": { render: renderContractPassword, contract: true },
  contact: { render: renderContact, contract: true },
  billing: { render: renderBilling, contract: true },
  terminate: { render: renderTerminate, contract: true },
};

// Screens for someone who cannot sign in (SPEC §9a): no session needed.
const PUBLIC_ROUTES = {
  forgot: renderForgot,
  recovery: renderRecovery,
};

let notice = "";
let rulesLanguage = null;

async function loadRules() {
  if (rulesLanguage === lang()) return;
  setRules(await api.rules());
  rulesLanguage = lang();
}

function signInForm({ legend, idLabel, idName, idHelp, autocomplete, onSubmit }) {
  const id = h("input", { type: "text", autocomplete, spellcheck: "false", autocapitalize: "none", maxlength: "320" });
  const password = h("input", { type: "password", autocomplete: "current-password", maxlength: "128" });
  const form = h("form", { class: "card sign-in", novalidate: true, "aria-labelledby": `${idName}-title` },
    h("h3", { id: `${idName}-title` }, legend),
    formErrorBox(),
    field({ label: idLabel, control: id, name: idName, help: idHelp }),
    field({ label: t("password"), control: password, name: "password" }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("signIn"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const errors = [];
    if (!id.value.trim()) errors.push({ field: idName, message: t("required") });
    if (!password.value) errors.push({ field: "password", message: t("required") });
    if (errors.length) { showErrors(form, errors); return; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      await onSubmit(id.value.trim(), password.value);
    } catch (error) {
      password.value = "";
      if (error instanceof ApiError) showApiError(form, error);
      else throw error;
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

function renderSignIn() {
  const finish = async (body) => {
    session.info = await api.signIn(body);
    notice = "";
    updateChrome();
    await route();
  };
  const contract = signInForm({
    legend: t("signInContract"), idLabel: t("contractNumber"), idName: "customer_number",
    idHelp: t("contractHelp"), autocomplete: "username",
    onSubmit: (cn, password) => finish({ customer_number: cn, password }),
  });
  const mailbox = signInForm({
    legend: t("signInMailbox"), idLabel: t("mailAddress"), idName: "address",
    idHelp: t("mailboxHelp"), autocomplete: "email",
    onSubmit: (address, password) => finish({ address, password }),
  });
  fill(view, heading(t("signInTitle")),
    notice ? h("p", { class: "notice", role: "status" }, notice) : null,
    h("p", { class: "help" }, t("signInHelp")),
    h("div", { class: "sign-in-grid" }, contract, mailbox),
    h("p", { class: "forgot" }, h("a", { href: "#/forgot" }, t("forgotLink"))));
  focusFirst(view);
}

function updateChrome() {
  applyStatic();
  const toggle = document.getElementById("lang-toggle");
  toggle.textContent = lang() === "ja" ? "English" : "日本語";
  toggle.lang = lang() === "ja" ? "en" : "ja";
  document.getElementById("sign-out").hidden = !session.signedIn;
  const who = document.getElementById("whoami");
  who.textContent = !session.signedIn ? ""
    : session.isMailbox ? t("signedInMailbox", { address: session.address })
      : t("signedInAs", { contract: session.contract });
}

export async function route() {
  try {
    await loadRules();
  } catch (error) {
    failure(view, error);
    return;
  }
  updateChrome();
  const { name, params } = currentRoute();
  if (PUBLIC_ROUTES[name]) {
    PUBLIC_ROUTES[name](view, ...params);
    return;
  }
  if (!session.signedIn) {
    renderSignIn();
    return;
  }
  const entry = ROUTES[name];
  if (!entry || (entry.contract && session.isMailbox)) {
    // Unknown, or not this user's to change: the address table, without a failing screen.
    if (location.hash && location.hash !== "#/") history.replaceState(null, "", "#/");
    await ROUTES[""].render(view);
    return;
  }
  try {
    await entry.render(view, ...params);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return; // whenExpired took over
    if (error instanceof ApiError) failure(view, error);
    else throw error;
  }
}

whenExpired(() => {
  notice = t("sessionExpired");
  updateChrome();
  renderSignIn();
});

async function start() {
  try {
    const info = await api.whoami();
    if (info.signed_in) session.info = info;
    else if (info.expired) notice = t("sessionExpired");
  } catch (error) {
    failure(view, error);
    return;
  }
  await route();
}

document.getElementById("lang-toggle").addEventListener("click", () => {
  setLang(lang() === "ja" ? "en" : "ja");
  route();
});
document.getElementById("sign-out").addEventListener("click", async () => {
  try {
    await api.signOut();
  } finally {
    session.clear();
    notice = t("signedOut");
    go("#/");
  }
});
setRenderer(route);
window.addEventListener("hashchange", route);
start();
