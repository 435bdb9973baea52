// The terms a customer accepts at registration (001 L3883: 「契約約款を確認します」), when the
// operator has not set `portal.terms_url` to the ISP's own: a summary, in the customer's
// language, of the points of the seed's service terms (003) that concern mail and My Page.
// Public (reachable from the sign-in page and in a new window from the wizard).  A summary
// and not the terms: the page says so, and an ISP replaces it by setting terms_url.

import { t, lang } from "./i18n.js";
import { rules } from "./rules.js";
import { fill, focusFirst, h, heading } from "./ui.js";

const SECTIONS = {
  ja: [
    ["約款の適用と変更 (第1条・第2条)",
      "当社は、契約約款に基づいてサービスを提供します。約款は変更することがあり、その場合は変更後の約款が適用されます。"],
    ["メールアドレスとオプションサービス (第36条〜第41条)",
      "メールアドレスの登録、メールウイルスチェック、迷惑メールチェック、受信拒否・受信許可、転送、自動返信などのオプションサービスは、マイページからお申し込み・変更・解約ができます。ご契約には{included}個のメールアドレスが含まれ、追加のメールアドレスは1個につき月額{yen}円 (税込) です。"],
    ["IDとパスワードの管理 (第20条)",
      "お客さま番号・メールアドレスとそのパスワードは、お客さまご自身の責任で管理してください。パスワードの紛失や盗難に気づいたときは、速やかに当社にご連絡ください。当社はそのIDによるサービスの提供を停止します。第三者の不正使用によってお客さまが被った損害について、当社は責任を負いません (第43条第4項)。"],
    ["料金 (第21条〜第25条)",
      "月額利用料は料金表のとおりです。追加メールアドレスの料金は購入の翌月から発生し、解約した月の末日まで発生します。日割り計算は行いません。料金明細はマイページの「ご契約情報・料金明細」で確認できます。"],
    ["サービスの停止・休止 (第16条・第17条)",
      "料金のお支払いがない場合、虚偽の届け出が判明した場合、約款に違反した場合などには、サービスの提供を停止することがあります。停止中は、メールは受信して保管しますが、ログインとメールの送信はできません。保守・工事や障害、天災などのときは、サービスを休止することがあります。"],
    ["解約 (第18条・第19条)",
      "お客さまは毎月末日付で解約できます。解約希望日の10日前までにお申し込みください (マイページの「解約のお申し込み」)。解約日の翌日から、メールの送受信とマイページへのログインはできなくなり、メールボックスのメールと設定は一定期間の後に削除されます。"],
    ["迷惑メール対策と隔離 (オプションサービス)",
      "迷惑メールチェックは迷惑メールを100%判定することはできません。隔離されたメールは{days}日間保存された後、自動的に削除されます。"],
    ["個人情報 (第42条)",
      "お客さまの個人情報は、当社の「個人情報保護方針」に基づいて適切に取り扱います。"],
    ["損害賠償の免責 (第43条)",
      "サービスの停止・休止・廃止によってお客さまが損害を被った場合、当社は責任を負いません。お客さまがサービスの利用によって第三者に損害を与えた場合は、お客さまご自身の責任と費用で解決していただきます。"],
  ],
  en: [
    ["Application and changes (Art. 1-2)",
      "We provide the service under the terms of contract. We may change the terms; the changed terms then apply."],
    ["Mail addresses and optional services (Art. 36-41)",
      "Mail addresses, virus check, spam check, deny and allow lists, forwarding and auto-reply are applied for, changed and cancelled on My Page. A contract includes {included} mail addresses; each further one costs {yen} yen a month (tax included)."],
    ["IDs and passwords (Art. 20)",
      "You are responsible for your customer number, mail addresses and their passwords. Tell us at once when a password is lost or stolen; we then stop the service for that ID. We are not liable for damage from a third party's misuse (Art. 43(4))."],
    ["Charges (Art. 21-25)",
      "Monthly charges are as in the price list. An additional mail address is charged from the month after its purchase to the end of the month it is given up, without proration. The charges are on My Page under \"Contract and billing\"."],
    ["Suspension and interruption (Art. 16-17)",
      "We may suspend the service when charges are not paid, a false statement comes to light or the terms are broken. While suspended, mail is received and kept, but no one can sign in or send. We may interrupt the service for maintenance, faults or disasters."],
    ["Termination (Art. 18-19)",
      "You may end the contract at the end of any month; apply at least 10 days before (\"Terminate the contract\" on My Page). From the next day no mail is sent or received and My Page cannot be used; mail and settings are deleted after a set period."],
    ["Spam measures and quarantine (optional services)",
      "The spam check cannot judge spam 100% correctly. Quarantined mail is kept {days} days, then deleted."],
    ["Personal information (Art. 42)",
      "We handle your personal information under our privacy policy."],
    ["Limitation of liability (Art. 43)",
      "We are not liable for damage from a suspension, interruption or end of the service. You settle at your own cost any damage your use of the service causes to others."],
  ],
};

export function renderTerms(view) {
  const r = rules();
  const values = { included: r.included_addresses ?? 5, yen: Number(r.extra_monthly_charge_yen).toLocaleString("ja-JP"),
    days: r.quarantine_days };
  const fillIn = (text) => text.replace(/\{(\w+)\}/g, (_m, name) => String(values[name] ?? ""));
  fill(view, heading(t("termsTitle")),
    h("p", { class: "notice" }, t("termsSummaryNote")),
    h("article", { class: "card terms-page" },
      SECTIONS[lang()].map(([title, text]) => h("section", {},
        h("h3", {}, title), h("p", {}, fillIn(text))))),
    h("div", { class: "actions" }, h("a", { href: "#/", class: "button" }, t("toTop"))));
  focusFirst(view);
}
