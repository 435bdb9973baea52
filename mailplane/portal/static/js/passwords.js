// POP password change and reissue (001 L3922-4039), and address deletion.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { passwordSheet } from "./sheet.js";
import { field, focusFirst, formErrorBox, h, heading, settingsFlow, stepBar, summary } from "./ui.js";

async function rowOf(address) {
  return api.row(address);
}

export async function renderPassword(view, address) {
  const row = await rowOf(address);
  const current = h("input", { type: "password", autocomplete: "current-password" });
  const next = h("input", { type: "password", autocomplete: "new-password", maxlength: "32" });
  const again = h("input", { type: "password", autocomplete: "new-password", maxlength: "32" });
  let changedOn = "";
  settingsFlow(view, {
    title: t("passwordTitle"), subtitle: address, help: t("passwordHelp"),
    build(form) {
      form.append(summary([[t("colAddress"), address], [t("colPop"), row ? row.pop_account : ""]]),
        field({ label: t("currentPassword"), control: current, name: "current" }),
        field({ label: t("newPassword"), control: next, name: "new" }),
        field({ label: t("newPasswordAgain"), control: again, name: "new_again" }));
    },
    collect() {
      const errors = [];
      if (!current.value) errors.push({ field: "current", message: t("required") });
      if (!next.value) errors.push({ field: "new", message: t("required") });
      else if (next.value !== again.value) errors.push({ field: "new_again", message: t("passwordsDiffer") });
      return { body: { current: current.value, new: next.value }, errors };
    },
    rows: () => [
      [t("colAddress"), address], [t("colPop"), row ? row.pop_account : ""],
      [t("newPassword"), t("passwordHidden")], ...(changedOn ? [[t("changedOn"), changedOn]] : []),
    ],
    async save(body) {
      const result = await api.changePassword(address, body);
      changedOn = result.changed_on;
      current.value = next.value = again.value = "";
      return body;
    },
    backHref: "#/", backLabel: t("toMenu"),
  });
}

export async function renderReissue(view, address) {
  const row = await rowOf(address);
  const labels = [t("step_confirm"), t("step_done")];
  const box = formErrorBox();
  const go = h("button", { type: "button", class: "primary", "data-action": "reissue" }, `${t("reissue")} >`);
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      const issued = await api.reissuePassword(address);
      view.replaceChildren(heading(t("reissueTitle")), stepBar(labels, 1),
        passwordSheet({ message: t("reissued"), address, popAccount: issued.pop_account, issued, dateLabel: t("changedOn") }),
        h("div", { class: "actions no-print" }, h("a", { href: "#/", class: "button" }, t("toMenu"))));
      focusFirst(view);
    } catch (error) {
      go.disabled = false;
      box.textContent = t("errorGeneric", { message: error.message });
      box.hidden = false;
      box.focus();
    }
  });
  view.replaceChildren(heading(t("reissueTitle")), stepBar(labels, 0),
    h("div", { class: "card" }, box, h("p", {}, t("reissueHelp")),
      summary([[t("colAddress"), address], [t("colPop"), row ? row.pop_account : ""]]),
      h("div", { class: "actions" }, go, h("a", { href: "#/", class: "button" }, t("back")))));
  focusFirst(view);
}

export function renderDelete(view, address) {
  const box = formErrorBox();
  const go = h("button", { type: "button", class: "danger", "data-action": "delete" }, t("delete"));
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      await api.deleteAddress(address);
      view.replaceChildren(heading(t("deleteTitle")),
        h("p", { class: "card done-message", role: "status" }, t("deleteDone"), " ", address),
        h("a", { href: "#/", class: "button primary" }, t("toMenu")));
      focusFirst(view);
    } catch (error) {
      go.disabled = false;
      box.textContent = t("errorGeneric", { message: error.message });
      box.hidden = false;
      box.focus();
    }
  });
  view.replaceChildren(heading(t("deleteTitle")),
    h("div", { class: "card" }, box, h("p", { class: "warning" }, t("deleteHelp")),
      summary([[t("colAddress"), address]]),
      h("div", { class: "actions" }, go, h("a", { href: "#/", class: "button" }, t("back")))));
  focusFirst(view);
}
