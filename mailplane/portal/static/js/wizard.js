// New-address wizard (001 L3813-3920): local part → 3 subdomain candidates ("show others",
// "previous candidates") → virus check and terms → confirm (with the charge, when one is
// due, shown before 登録 is pressed) → done with the password shown once.  Each step has its
// own URL (#/new, #/new/domain, #/new/options, #/new/confirm, #/new/done) and the wizard's
// state is kept in sessionStorage, so Back and reload stay on the step.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { go, replaceRoute } from "./router.js";
import { localPartViolation, rules } from "./rules.js";
import { passwordSheet } from "./sheet.js";
import { clearErrors, field, fill, focusFirst, formErrorBox, h, heading, nextId, radioPair, showApiError, showErrors, stepBar, summary } from "./ui.js";

const KEY = "mp.wizard";
let shownOnce = null; // the created address with its password: memory only, never stored

function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function load() {
  const raw = sessionStorage.getItem(KEY);
  return raw ? JSON.parse(raw) : null;
}

function fresh() {
  return { localPart: "", page: 1, candidates: [], hasMore: false, subdomain: "", address: "",
    virus: true, terms: false, idempotencyKey: randomKey(), charge: "", error: null };
}

const save = (state) => sessionStorage.setItem(KEY, JSON.stringify(state));

export async function renderWizard(view, step = "") {
  let state = load();
  if (!state || (!step && !state.localPart)) state = state || fresh();
  // A step needs what the earlier steps chose; without it, back to the first step.
  const needs = { domain: "localPart", options: "subdomain", confirm: "subdomain" };
  if (needs[step] && !state[needs[step]]) {
    replaceRoute("#/new");
    return;
  }
  const labels = ["wizStep1", "wizStep2", "wizStep3", "wizStep4", "wizStep5"].map((k) => t(k));
  const show = (index, title, ...content) => {
    fill(view, heading(title), stepBar(labels, index), ...content);
    focusFirst(view);
  };
  const takeError = (form) => {
    if (state.error) {
      showApiError(form, state.error);
      state.error = null;
      save(state);
    }
  };

  if (step === "done") {
    const created = shownOnce;
    shownOnce = null; // shown once: Forward or reload brings the notice, not the password
    const content = created && created.initial_password
      ? passwordSheet({ message: t("doneTitle"), address: created.address.address,
        popAccount: created.pop_account, issued: created.initial_password, dateLabel: t("registeredOn") })
      : h("p", { class: "card", role: "status" }, t("replayed"));
    sessionStorage.removeItem(KEY);
    show(4, t("wizTitle"), content,
      h("div", { class: "actions no-print" }, h("a", { href: "#/", class: "button" }, t("toMenu"))));
    return;
  }

  if (!step) {
    const input = h("input", {
      type: "text", value: state.localPart, autocomplete: "off", spellcheck: "false",
      maxlength: String(rules().local_part.max), inputmode: "email", autocapitalize: "none",
    });
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("wizLocalHelp")),
      h("div", { class: "inline-address" },
        field({ label: t("localPart"), control: input, name: "local_part", help: t("localRules") })),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("next")),
        h("a", { href: "#/", class: "button" }, t("back"))));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const value = input.value.trim();
      const problem = value ? localPartViolation(value) : t("required");
      if (problem) {
        showErrors(form, [{ field: "local_part", message: problem }]);
        return;
      }
      try {
        const data = await api.candidates(value, 1);
        Object.assign(state, { localPart: value, page: 1, subdomain: "", address: "", charge: "",
          candidates: data.candidates, hasMore: data.has_more });
        save(state);
        go("#/new/domain");
      } catch (error) {
        if (error.status !== 401) showApiError(form, error);
      }
    });
    show(0, t("wizTitle"), form);
    takeError(form);
    return;
  }

  if (step === "domain") {
    if (!state.candidates.length) {
      const data = await api.candidates(state.localPart, state.page);
      state.candidates = data.candidates;
      state.hasMore = data.has_more;
      save(state);
    }
    const name = nextId("subdomain");
    const options = h("div", { class: "candidates", "data-field": "subdomain", id: `${name}-group`, tabindex: "-1" },
      state.candidates.map((c) => {
        const radio = h("input", { type: "radio", name, value: c.subdomain, id: nextId("cand"),
          checked: c.subdomain === state.subdomain, dataset: { address: c.address } });
        return h("div", { class: "candidate" }, radio, h("label", { for: radio.id }, c.address));
      }));
    const turn = async (page) => {
      const data = await api.candidates(state.localPart, page);
      Object.assign(state, { page, candidates: data.candidates, hasMore: data.has_more, subdomain: "" });
      save(state);
      await renderWizard(view, "domain");
      view.querySelector(".candidates input[type=radio]")?.focus();
    };
    const previous = h("button", { type: "button", disabled: state.page <= 1, "data-action": "previous" }, t("showPrevious"));
    const more = h("button", { type: "button", disabled: !state.hasMore, "data-action": "more" }, t("showOthers"));
    previous.addEventListener("click", () => turn(state.page - 1));
    more.addEventListener("click", () => turn(state.page + 1));
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("subdomainHelp")),
      h("fieldset", {}, h("legend", {}, t("subdomainCandidates")), options,
        h("ul", { class: "field-error", id: `${name}-group-error`, hidden: true })),
      h("p", { class: "candidate-pages" }, previous, " ", more,
        state.hasMore ? "" : h("span", { class: "help" }, " ", t("noMoreCandidates"))),
      h("p", { class: "help" }, t("subdomainRules")),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("next")),
        h("a", { href: "#/new", class: "button" }, t("back"))));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      const chosen = form.querySelector("input[type=radio]:checked");
      if (!chosen) {
        showErrors(form, [{ field: "subdomain", message: t("chooseSubdomain") }]);
        options.focus();
        return;
      }
      Object.assign(state, { subdomain: chosen.value, address: chosen.dataset.address, charge: "" });
      save(state);
      go("#/new/options");
    });
    show(1, t("subdomainTitle"), form);
    takeError(form);
    return;
  }

  if (step === "options") {
    const terms = h("input", { type: "checkbox", checked: state.terms });
    const virus = radioPair({ legend: t("virusCheck"), name: nextId("virus"), yes: t("on"), no: t("off"),
      value: state.virus, field: "virus_check" });
    const termsUrl = rules().terms_url;
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("virusHelp")),
      virus.node,
      h("section", { class: "terms", "aria-labelledby": "terms-title" },
        h("h3", { id: "terms-title" }, t("terms")), h("p", {}, t("termsText")),
        termsUrl ? h("p", {}, h("a", { href: termsUrl, target: "_blank", rel: "noopener" }, t("termsLink"))) : null),
      field({ label: t("acceptTerms"), control: terms, name: "accept_terms" }),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("confirm")),
        h("a", { href: "#/new/domain", class: "button" }, t("back"))));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      Object.assign(state, { virus: virus.get(), terms: terms.checked });
      save(state);
      if (!terms.checked) {
        showErrors(form, [{ field: "accept_terms", message: t("mustAcceptTerms") }]);
        return;
      }
      go("#/new/confirm");
    });
    show(2, t("virusTitle"), form);
    takeError(form);
    return;
  }

  // confirm: the charge of a paid slot is shown here, before 登録 (SPEC §9a), from the
  // contract's charges; a 409 charge_required (another registration took the last free
  // slot meanwhile) shows the server's words instead.
  const box = formErrorBox();
  const contract = await api.contract();
  const due = contract.charges ? contract.charges.next_address_yen : 0;
  const number = (value) => Number(value).toLocaleString("ja-JP");
  const charge = state.charge || (due ? t("chargeUpfront", {
    n: contract.quota.extra + 1, yen: number(due),
    total: number(contract.charges.monthly_total_yen + due),
  }) : "");
  const register = h("button", { type: "button", class: "primary", "data-action": "register" },
    charge ? t("acceptCharge") : t("register"));
  register.addEventListener("click", async () => {
    register.disabled = true;
    const body = {
      local_part: state.localPart, subdomain: state.subdomain, virus_check: state.virus,
      accept_terms: state.terms, accept_charge: Boolean(charge),
    };
    try {
      shownOnce = await api.createAddress(body, state.idempotencyKey);
      replaceRoute("#/new/done");
    } catch (error) {
      register.disabled = false;
      if (error.status === 401) return;
      const back = { local_part: "#/new", subdomain: "#/new/domain", accept_terms: "#/new/options" }[error.field];
      if (error.code === "charge_required") {
        state.charge = error.message;
        save(state);
        await renderWizard(view, "confirm");
      } else if (back) {
        if (error.field === "subdomain") Object.assign(state, { idempotencyKey: randomKey(), candidates: [] });
        state.error = { field: error.field, message: error.message, details: error.details };
        save(state);
        go(back);
      } else {
        box.textContent = error.message;
        box.hidden = false;
        box.focus();
      }
    }
  });
  show(3, t("confirmTitle"),
    h("div", { class: "card" },
      box,
      h("p", {}, t("confirmHelp")),
      summary([[t("colAddress"), state.address], [t("virusCheck"), state.virus ? t("on") : t("off")]]),
      charge ? h("section", { class: "charge", "aria-labelledby": "charge-title" },
        h("h3", { id: "charge-title" }, t("chargeTitle")), h("p", {}, charge)) : null,
      h("div", { class: "actions" }, register,
        h("a", { href: "#/new/options", class: "button" }, t("back")))));
}
