// どこでもメール, the webmail (SPEC §9b): where the manual sends customers — to read the
// quarantine (001 L4102, L4163) and to send mail from abroad (L4645-4647).  The address is
// the server's ([webmail] public_url, published by GET /v1/rules); none: no link.

import { t } from "./i18n.js";
import { rules } from "./rules.js";
import { h } from "./ui.js";

export function webmailNote(textKey) {
  const url = rules() && rules().webmail_url;
  if (!url) return null;
  return h("p", { class: "help webmail-note", "data-testid": "webmail-note" }, t(textKey), " ",
    h("a", { href: url, target: "_blank", rel: "noopener" }, t("webmailOpen")));
}
