// Entry point: sign-in, the hash router and the page chrome (language toggle, sign-out).

import { api, ApiError, bareMessage, session } from "./api.js";
import { applyStatic, lang, setLang, t } from "./i18n.js";
import { renderTable } from "./table.js";
import { renderWizard } from "./wizard.js";
import { renderSpamMenu, renderSpam, renderDeny, renderAllow, renderForwarding, renderAutoReply } from "./settings.js";
import { renderPassword, renderReissue, renderDelete } from "./passwords.js";
import { renderQuarantine } from "./quarantine.js";
import { clearErrors, field, focusFirst, formErrorBox, h, heading, showFieldError } from "./ui.js";

const view = document.getElementById("view");

const ROUTES = {
  "": renderTable,
  new: renderWizard,
  spam: renderSpamMenu,
  "spam-check": renderSpam,
  deny: renderDeny,
  allow: renderAllow,
  forwarding: renderForwarding,
  "auto-reply": renderAutoReply,
  password: renderPassword,
  reissue: renderReissue,
  delete: renderDelete,
  quarantine: renderQuarantine,
};

function renderSignIn() {
  const key = h("input", { type: "password", autocomplete: "off", required: true, spellcheck: "false" });
  const contract = h("input", { type: "text", autocomplete: "off", spellcheck: "false" });
  const form = h("form", { class: "card narrow", novalidate: true },
    formErrorBox(),
    field({ label: t("apiKey"), control: key, name: "api_key" }),
    field({ label: t("contractNumber"), control: contract, name: "contract", help: t("contractHelp") }),
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, t("signIn"))));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const apiKey = key.value.trim();
    if (!apiKey) {
      showFieldError(form, "api_key", t("required"));
      key.focus();
      return;
    }
    let cn = contract.value.trim();
    try {
      if (!cn) {
        // A customer key names its own contract; needs GET /v1/me on the API.
        try {
          cn = (await api.me(apiKey)).contract || "";
        } catch (error) {
          if (error.status === 401) throw error;
          cn = "";
        }
        if (!cn) {
          showFieldError(form, "contract", t("needContract"));
          contract.focus();
          return;
        }
      }
      await api.contract(cn, apiKey);
      session.signIn(apiKey, cn);
      go("#/");
    } catch (error) {
      const target = error.status === 401 ? "api_key" : "contract";
      showFieldError(form, target, error instanceof ApiError ? bareMessage(error) : String(error));
      (target === "api_key" ? key : contract).focus();
    }
  });
  view.replaceChildren(heading(t("signInTitle")), h("p", { class: "help" }, t("signInHelp")), form);
  focusFirst(view);
}

function updateChrome() {
  applyStatic();
  const toggle = document.getElementById("lang-toggle");
  toggle.textContent = lang() === "ja" ? "English" : "日本語";
  toggle.lang = lang() === "ja" ? "en" : "ja";
  document.getElementById("sign-out").hidden = !session.key;
  document.getElementById("whoami").textContent =
    session.key ? t("signedInAs", { contract: session.contract }) : "";
  document.title = `${t("brand")} - ${t("addressesTitle")}`;
}

/** Navigate; draws at once when the hash is already there (no hashchange event then). */
export function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

export async function route() {
  updateChrome();
  if (!session.key) {
    renderSignIn();
    return;
  }
  const [name = "", ...rest] = location.hash.replace(/^#\/?/, "").split("/");
  const params = rest.map(decodeURIComponent);
  const render = ROUTES[name] || renderTable;
  try {
    await render(view, ...params);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      session.signOut();
      renderSignIn();
      return;
    }
    view.replaceChildren(heading(t("addressesTitle")),
      h("p", { class: "form-error", role: "alert" }, t("errorGeneric", { message: error.message })),
      h("a", { href: "#/", class: "button" }, t("toMenu")));
    focusFirst(view);
  }
}

document.getElementById("lang-toggle").addEventListener("click", () => {
  setLang(lang() === "ja" ? "en" : "ja");
  route();
});
document.getElementById("sign-out").addEventListener("click", () => {
  session.signOut();
  go("#/");
});
window.addEventListener("hashchange", route);
route();
