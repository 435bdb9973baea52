// POP password change and reissue (001 L3922-4039), and address deletion.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { replaceRoute } from "./router.js";
import { localPartPasswordViolation, passwordViolation, rules } from "./rules.js";
import { passwordSheet } from "./sheet.js";
import { addressText, caution, field, fill, focusFirst, formErrorBox, h, heading, settingsFlow, stepBar, summary } from "./ui.js";

const enc = encodeURIComponent;
let reissued = null; // the reissued password: memory only, shown once

export async function renderPassword(view, address, step) {
  const row = await api.row(address);
  const current = h("input", { type: "password", autocomplete: "current-password", maxlength: "128" });
  // No maxlength: the browser would cut a longer paste silently and both fields would
  // match, so the saved password would not be the customer's; the rule check says why.
  const next = h("input", { type: "password", autocomplete: "new-password" });
  const again = h("input", { type: "password", autocomplete: "new-password" });
  settingsFlow(view, {
    title: t("passwordTitle"), subtitle: address, help: t("passwordHelp"),
    base: `#/password/${enc(address)}`, step, persist: false, current: {},
    labels: [t("step_changeInput"), t("step_changeConfirm"), t("step_changed")],  // L3944
    build(form, values) {
      current.value = values.current || "";
      next.value = values.new || "";
      again.value = values.new || "";
      form.append(summary([[t("colAddress"), addressText(address)], [t("colPop"), row.pop_account]]),
        field({ label: t("currentPassword"), control: current, name: "current" }),
        field({ label: t("newPassword"), control: next, name: "new", help: t("passwordRules") }),
        field({ label: t("newPasswordAgain"), control: again, name: "new_again" }));
    },
    collect() {
      const errors = [];
      if (!current.value) errors.push({ field: "current", message: t("required") });
      const problem = next.value
        ? passwordViolation(next.value) || localPartPasswordViolation(next.value, address)
        : t("required");
      if (problem) errors.push({ field: "new", message: problem });
      else if (next.value !== again.value) errors.push({ field: "new_again", message: t("passwordsDiffer") });
      return { body: { current: current.value, new: next.value }, errors };
    },
    rows: (body) => [
      [t("colAddress"), addressText(address)], [t("colPop"), row.pop_account],
      [t("newPassword"), t("passwordHidden")], ...(body.changed_on ? [[t("changedOn"), body.changed_on]] : []),
    ],
    save: (body) => api.changePassword(address, body),
    done: t("passwordChanged"),
    backHref: "#/", backLabel: t("toMenu"),
  });
}

export async function renderReissue(view, address, step) {
  const labels = [t("step_confirm"), t("step_issued")];  // L3999: 内容の確認 → 発行完了
  if (step === "done") {
    const issued = reissued;
    reissued = null;
    fill(view, heading(t("reissueTitle")), stepBar(labels, 1),
      issued
        ? passwordSheet({ message: t("reissued"), address, popAccount: issued.pop_account, issued, dateLabel: t("changedOn") })
        : h("p", { class: "card", role: "status" }, t("reissueShownOnce")),
      h("div", { class: "actions no-print" }, h("a", { href: "#/", class: "button" }, t("toMenu"))));
    focusFirst(view);
    return;
  }
  const row = await api.row(address);
  const box = formErrorBox();
  const go = h("button", { type: "button", class: "primary", "data-action": "reissue" }, `${t("reissue")} >`);
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      reissued = await api.reissuePassword(address);
      replaceRoute(`#/reissue/${enc(address)}/done`);
    } catch (error) {
      go.disabled = false;
      if (error.status === 401) return;
      box.textContent = error.message;
      box.hidden = false;
      box.focus();
    }
  });
  fill(view, heading(t("reissueTitle")), stepBar(labels, 0),
    h("div", { class: "card" }, box, h("p", {}, t("reissueHelp")),
      summary([[t("colAddress"), addressText(address)], [t("colPop"), row.pop_account]]),
      h("div", { class: "actions" }, go, h("a", { href: "#/", class: "button" }, t("back")))));
  focusFirst(view);
}

export async function renderDelete(view, address, step) {
  if (step === "done") {
    fill(view, heading(t("deleteTitle")),
      h("p", { class: "card done-message", role: "status" }, t("deleteDone", { address })),
      h("a", { href: "#/", class: "button primary" }, t("toMenu")));
    focusFirst(view);
    return;
  }
  // An unknown address gets the server's "not found" screen.  The contact address (where
  // every notice and recovery code goes) and the addresses forwarding here get a warning.
  const [, contract, list] = await Promise.all([api.row(address), api.contract(), api.addresses()]);
  const isContact = (contract.contact_email || "").toLowerCase() === address.toLowerCase();
  const forwardedFrom = list.addresses.filter((row) => row.address !== address
    && row.forwarding.destinations.some((d) => d.toLowerCase() === address.toLowerCase()))
    .map((row) => row.address);
  const box = formErrorBox();
  const go = h("button", { type: "button", class: "danger", "data-action": "delete" }, t("delete"));
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      await api.deleteAddress(address);
      replaceRoute(`#/delete/${enc(address)}/done`);
    } catch (error) {
      go.disabled = false;
      if (error.status === 401) return;
      box.textContent = error.message;
      box.hidden = false;
      box.focus();
    }
  });
  fill(view, heading(t("deleteTitle")),
    h("div", { class: "card" }, box,
      isContact ? h("div", { class: "caution contact-caution", role: "alert" },
        h("strong", { class: "caution-mark" }, t("caution")), " ", t("deleteContactCaution"), " ",
        h("a", { href: "#/contact" }, t("changeContactFirst"))) : null,
      forwardedFrom.length ? caution(t("deleteForwardedFrom", { list: forwardedFrom.join(", ") })) : null,
      caution(t("deleteHelp"), " ", t("deleteCooloff", { days: rules().deleted_cooloff_days })),
      summary([[t("colAddress"), addressText(address)]]),
      h("div", { class: "actions" }, go, h("a", { href: "#/", class: "button" }, t("back")))));
  focusFirst(view);
}
