// New-address wizard (001 L3813-3920): local part → 3 subdomain candidates with "show
// others" → virus check and terms → confirm → done with the password shown once.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { passwordSheet } from "./sheet.js";
import {
  clearErrors, field, focusFirst, formErrorBox, h, heading, nextId, radioPair,
  showApiError, showFieldError, stepBar, summary,
} from "./ui.js";

/** Idempotency-Key for this wizard run: a double click never registers twice (SPEC §1). */
function randomKey() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function renderWizard(view) {
  const state = {
    localPart: "", page: 1, candidates: [], hasMore: false, subdomain: "", address: "",
    virus: true, terms: false, idempotencyKey: randomKey(),
  };
  const labels = ["wizStep1", "wizStep2", "wizStep3", "wizStep4", "wizStep5"].map((k) => t(k));

  const show = (index, title, ...content) => {
    view.replaceChildren(heading(title), stepBar(labels, index), ...content);
    focusFirst(view);
  };

  function stepLocal(error) {
    const input = h("input", {
      type: "text", value: state.localPart, autocomplete: "off", spellcheck: "false",
      maxlength: "20", inputmode: "email", autocapitalize: "none",
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
      if (!value) {
        showFieldError(form, "local_part", t("required"));
        input.focus();
        return;
      }
      try {
        const data = await api.candidates(value, 1);
        Object.assign(state, { localPart: value, page: 1, subdomain: "" });
        state.candidates = data.candidates;
        state.hasMore = data.has_more;
        stepDomain();
      } catch (exc) {
        showApiError(form, exc);
      }
    });
    show(0, t("wizTitle"), form);
    if (error) showApiError(form, error);
  }

  function stepDomain(error) {
    const name = nextId("subdomain");
    const options = h("div", { class: "candidates", "data-field": "subdomain", id: `${name}-group`, tabindex: "-1" },
      state.candidates.map((c) => {
        const radio = h("input", { type: "radio", name, value: c.subdomain, id: nextId("cand"),
          checked: c.subdomain === state.subdomain, dataset: { address: c.address } });
        return h("div", { class: "candidate" }, radio, h("label", { for: radio.id }, c.address));
      }));
    const more = h("button", { type: "button", disabled: !state.hasMore, "data-action": "more" }, t("showOthers"));
    const errorSlot = h("p", { class: "field-error", id: `${name}-group-error`, role: "alert", hidden: true });
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("subdomainHelp")),
      h("fieldset", {}, h("legend", {}, t("subdomainCandidates")), options, errorSlot),
      h("p", {}, more, state.hasMore ? "" : h("span", { class: "help" }, " ", t("noMoreCandidates"))),
      h("p", { class: "help" }, t("subdomainRules")),
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("next")),
        h("button", { type: "button", onclick: () => stepLocal() }, t("back"))));
    more.addEventListener("click", async () => {
      try {
        const data = await api.candidates(state.localPart, state.page + 1);
        state.page += 1;
        state.candidates = data.candidates;
        state.hasMore = data.has_more;
        state.subdomain = "";
        stepDomain();
        view.querySelector("input[type=radio]")?.focus();
      } catch (exc) {
        showApiError(form, exc);
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      const chosen = form.querySelector("input[type=radio]:checked");
      if (!chosen) {
        showFieldError(form, "subdomain", t("chooseSubdomain"));
        options.focus();
        return;
      }
      state.subdomain = chosen.value;
      state.address = chosen.dataset.address;
      stepOptions();
    });
    show(1, t("subdomainTitle"), form);
    if (error) showApiError(form, error);
  }

  function stepOptions(error) {
    const terms = h("input", { type: "checkbox", checked: state.terms });
    const virus = radioPair({ legend: t("virusCheck"), name: nextId("virus"), yes: t("on"), no: t("off"),
      value: state.virus, field: "virus_check" });
    const form = h("form", { class: "card", novalidate: true }, formErrorBox(),
      h("p", {}, t("virusHelp")),
      h("section", { class: "terms", "aria-label": t("terms") },
        h("h3", {}, t("terms")), h("p", {}, t("termsText"))),
      field({ label: t("acceptTerms"), control: terms, name: "accept_terms" }),
      virus.node,
      h("div", { class: "actions" },
        h("button", { type: "submit", class: "primary" }, t("confirm")),
        h("button", { type: "button", onclick: () => stepDomain() }, t("back"))));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      clearErrors(form);
      state.virus = virus.get();
      state.terms = terms.checked;
      if (!terms.checked) {
        showFieldError(form, "accept_terms", t("mustAcceptTerms"));
        terms.focus();
        return;
      }
      stepConfirm();
    });
    show(2, t("virusTitle"), form);
    if (error) showApiError(form, error);
  }

  function stepConfirm(charge) {
    const box = formErrorBox();
    const register = h("button", { type: "button", class: "primary", "data-action": "register" },
      charge ? t("acceptCharge") : t("register"));
    register.addEventListener("click", async () => {
      register.disabled = true;
      const body = {
        local_part: state.localPart, subdomain: state.subdomain, virus_check: state.virus,
        accept_terms: state.terms, accept_charge: Boolean(charge),
      };
      try {
        const created = await api.createAddress(body, state.idempotencyKey);
        stepDone(created);
      } catch (exc) {
        register.disabled = false;
        if (exc.code === "charge_required") stepConfirm(exc.message);
        else if (exc.field === "local_part") stepLocal(exc);
        else if (exc.field === "subdomain") {
          state.idempotencyKey = randomKey();
          stepDomain(exc);
        } else if (exc.field === "accept_terms") stepOptions(exc);
        else {
          box.textContent = t("errorGeneric", { message: exc.message });
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
        charge ? h("div", { class: "charge", role: "alert" }, h("h3", {}, t("chargeTitle")), h("p", {}, charge)) : null,
        h("div", { class: "actions" }, register,
          h("button", { type: "button", onclick: () => stepOptions() }, t("back")))));
  }

  function stepDone(created) {
    const issued = created.initial_password;
    const content = issued
      ? passwordSheet({ message: t("doneTitle"), address: created.address.address,
        popAccount: created.pop_account, issued, dateLabel: t("registeredOn") })
      : h("p", { class: "card", role: "status" }, t("replayed"));
    show(4, t("wizTitle"), content,
      h("div", { class: "actions no-print" }, h("a", { href: "#/", class: "button" }, t("toMenu"))));
  }

  stepLocal();
}
