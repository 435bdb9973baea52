// Mail client setup for one address (issue 16): what to type into a mail program, built by
// the server from its public host names and ports — IMAP first and recommended where it is
// offered (どこでもメール, SPEC §9b), then POP3 — plus the Apple profile download and a
// word on the automatic setup of Thunderbird and Outlook.

import { api } from "./api.js";
import { t } from "./i18n.js";
import { addressText, fill, focusFirst, h, heading, summary } from "./ui.js";

const security = (value) => (value === "SSL" ? t("secSsl") : t("secStarttls"));

export async function renderSetup(view, address) {
  const data = await api.setup(address);
  const servers = (protocol) => data.servers.filter((s) => s.protocol === protocol);
  const serverTable = (title, protocol, extra) => h("section", { class: "card setup-block", "aria-labelledby": `setup-${protocol}` },
    h("h3", { id: `setup-${protocol}` }, title),
    summary([
      [t("serverName"), h("code", { "data-testid": `${protocol}-host` }, servers(protocol)[0].host)],
      ...servers(protocol).map((s) => [t("portWith", { security: security(s.security) }),
        h("code", { "data-testid": `${protocol}-${s.security}` }, String(s.port))]),
      ...extra,
    ]));
  fill(view, heading(t("setupTitle")), h("p", { class: "subtitle" }, addressText(address)),
    h("p", { class: "help" }, t("setupHelp")),
    h("section", { class: "card setup-block", "aria-labelledby": "setup-account" },
      h("h3", { id: "setup-account" }, t("setupAccount")),
      summary([
        [t("colAddress"), addressText(data.address)],
        [t("userName"), h("code", { "data-testid": "username" }, data.username)],
        [t("password"), t("setupPassword")],
      ])),
    servers("IMAP").length
      ? serverTable(t("incomingServerImap"), "IMAP", [[t("setupNote"), t("imapHelp")]])
      : null,
    serverTable(t("incomingServer"), "POP3", []),
    serverTable(t("outgoingServer"), "SMTP", [[t("smtpAuth"), t("smtpAuthValue")]]),
    h("section", { class: "card setup-block", "aria-labelledby": "setup-auto" },
      h("h3", { id: "setup-auto" }, t("setupAuto")),
      h("ul", { class: "plain-list" },
        h("li", {}, h("a", { href: api.profileUrl(address), download: "", "data-action": "mobileconfig" }, t("appleProfile")),
          " ", h("span", { class: "help" }, t("appleProfileHelp"))),
        h("li", {}, t("thunderbirdHelp")),
        h("li", {}, t("outlookHelp")))),
    h("div", { class: "actions" }, h("a", { href: "#/", class: "button" }, t("toMenu"))));
  focusFirst(view);
}
