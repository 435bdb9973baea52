// The API's input rules, checked in the browser before the confirm step (issue 16).
//
// One source: the numbers, character sets and messages come from GET /v1/rules (the
// server's rule modules and its gettext catalogue); the checks below follow the server's
// functions line by line, in the same order, so the first rule a value breaks is the one
// the API would name, in the same words.  tests/portal/test_rules_parity.py runs both on
// the same inputs.  The server checks again on save.
//
// A message is {t: msgid, p: params}; text() translates it (and any message in its params).

let R = null;

export function setRules(data) { R = data; }
export function rules() { return R; }

const T = (t, p = {}) => ({ t, p });

/** A message in the page's language, exactly as the API words it. */
export function text(message) {
  if (message === null || message === undefined) return "";
  if (typeof message === "string") return message;
  const template = (R && R.messages && R.messages[message.t]) || message.t;
  return template.replace(/\{(\w+)\}/g, (whole, name) => {
    if (!(name in message.p)) return whole;
    const value = message.p[name];
    return value && typeof value === "object" ? text(value) : String(value);
  });
}

// Python's str.isspace() set, so strip() and "contains a space" agree with the server.
const PY_SPACE = "\\t\\n\\v\\f\\r \\x1c-\\x1f\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";
const SPACE_RE = new RegExp(`[${PY_SPACE}]`, "u");
const STRIP_RE = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, "gu");
const length = (value) => [...value].length;
export const pyStrip = (value) => value.replace(STRIP_RE, "");

// --- registration and POP passwords (rules/registration.py, auth/passwords.py) ---------

export function localPartViolation(value) {
  const { min, max, chars, edge } = R.local_part;
  if (!(min <= length(value) && length(value) <= max)) return T("must be {min}-{max} characters", { min, max });
  if (/[A-Z]/.test(value)) return T("upper case letters are not allowed; use lower case (a-z)");
  if (!new RegExp(`^[${chars}]+$`, "u").test(value)) return T("may contain only a-z, 0-9, - and _");
  if (edge.includes(value[0])) return T("cannot start with {char}", { char: value[0] });
  if (edge.includes(value[value.length - 1])) return T("cannot end with {char}", { char: value[value.length - 1] });
  return null;
}

export function passwordViolation(value) {
  const { min, max, chars } = R.pop_password;
  if (!(min <= length(value) && length(value) <= max)) return T("must be {min}-{max} characters", { min, max });
  if (value.includes("@")) return T("cannot contain @");
  if (!new RegExp(`^[${chars}]+$`, "u").test(value)) return T("may contain only A-Z a-z 0-9 and % + . / : = ^ _ -");
  return null;
}

// rules/account.py contract_password_violation: the contract password a customer chooses.
export function contractPasswordViolation(value, customerNumber) {
  const { min, max } = R.contract_password;
  if (!(min <= length(value) && length(value) <= max)) return T("must be {min}-{max} characters", { min, max });
  if (![...value].every((ch) => ch >= "!" && ch <= "~")) {
    return T("may contain only half-width letters, digits and symbols (no spaces)");
  }
  if (value.toLowerCase() === (customerNumber || "").toLowerCase()) {
    return T("must not be the same as the customer number");
  }
  if (new Set([...value]).size === 1) return T("must not repeat one character only");
  return null;
}

// auth/passwords.py same_as_local_part: a POP password must not be the part of the
// address before @ (004 L299); passwords are ASCII, so lower case equals casefold().
export function localPartPasswordViolation(value, address) {
  const localPart = address.slice(0, address.lastIndexOf("@"));
  return value.toLowerCase() === localPart.toLowerCase()
    ? T("must not be the same as the part of the address before @") : null;
}

// --- mail addresses (mail/address.py) ----------------------------------------------------

const LABEL_RE = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/u;
const REMOTE_LOCAL_RE = /^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+$/u;

export function domainViolation(domain) {
  if (!domain || length(domain) > 253) return T("domain must be 1-253 characters");
  const labels = domain.toLowerCase().split(".");
  if (labels.length < 2) return T("domain must contain a dot");
  if (!labels.every((label) => LABEL_RE.test(label))) {
    return T("domain may contain only letters, digits, - and dots between labels");
  }
  return null;
}

export function emailViolation(value) {
  if (!value || length(value) > 254) return T("must be a mail address of at most 254 characters");
  if (value.split("@").length !== 2) return T("must be a mail address like user@example.jp");
  const [local, domain] = value.split("@");
  if (!local || length(local) > 64 || !REMOTE_LOCAL_RE.test(local)) return T("the part before @ is not valid");
  if (local.startsWith(".") || local.endsWith(".") || local.includes("..")) {
    return T("the part before @ cannot start or end with a dot or contain two dots in a row");
  }
  return domainViolation(domain);
}

// --- deny/allow list entries (filters/list_entries.py) -----------------------------------

const SUFFIX_RE = /^[a-z0-9._-]+$/u;

export const normaliseAddressEntry = (raw) => pyStrip(raw.normalize("NFKC")).toLowerCase();
export const normaliseSubjectEntry = (raw) => pyStrip(raw.normalize("NFKC"));
const subjectKey = (entry) => entry.normalize("NFKC").replace(/[A-Z]/g, (c) => c.toLowerCase());

export function addressEntryViolation(entry) {
  const max = R.lists.max_entry_length;
  if (length(entry) > max) return T("must be at most {limit} characters", { limit: max });
  if (SPACE_RE.test(entry)) return T("cannot contain spaces; put one entry per line");
  if (!entry.includes("@") && !entry.includes(".")) return T("has no effect — enter user@host, @domain or domain.tld");
  if (entry.startsWith("@")) {
    const suffix = entry.slice(1);
    if (!suffix) return T("has no effect — enter a domain after @, e.g. @example.jp");
    if (!SUFFIX_RE.test(suffix)) return T("after @ only letters, digits, '-', '_' and '.' are allowed");
    return null;
  }
  if (entry.includes("@")) {
    const problem = emailViolation(entry);
    return problem ? T("is not a mail address ({problem})", { problem }) : null;
  }
  if (!SUFFIX_RE.test(entry)) return T("a domain may contain only letters, digits, '-', '_' and '.'");
  return null;
}

function isFullWidth(char) {
  const code = char.codePointAt(0);
  return R.wide_ranges.some(([low, high]) => low <= code && code <= high);
}

export function subjectEntryViolation(entry) {
  const max = R.lists.max_entry_length;
  if (length(entry) > max) return T("must be at most {limit} characters", { limit: max });
  if (/\p{Cc}/u.test(entry)) return T("cannot contain control characters; put one subject per line");
  if (length(entry) === 1 && isFullWidth(entry)) {
    return T("a single full-width character alone has no effect — enter two or more");
  }
  return null;
}

export function mailboxViolation(entry) {
  const max = R.lists.max_entry_length;
  if (length(entry) > max) return T("must be at most {limit} characters", { limit: max });
  return emailViolation(entry);
}

const shorten = (entry) => (length(entry) <= 40 ? entry : `${[...entry].slice(0, 39).join("")}…`);

/**
 * A whole list as the server cleans it (clean_entries), but reporting *every* bad entry:
 * [{field: `${name}[i]`, message}] plus a size error on `name`.  `i` is the index in the
 * submitted list, as in the API's error field.
 */
export function listErrors(name, values, { normalise, violation, key = (entry) => entry }) {
  const errors = [];
  const seen = new Set();
  values.forEach((raw, index) => {
    const entry = normalise(raw);
    if (!entry) return;
    const problem = violation(entry);
    if (problem) {
      errors.push({ field: `${name}[${index}]`, message: T("`{entry}`: {rule}", { entry: shorten(entry), rule: problem }) });
      return;
    }
    seen.add(key(entry));
  });
  const limit = R.lists.max_entries;
  if (!errors.length && seen.size > limit) {
    errors.push({ field: name, message: T("at most {limit} entries are allowed ({count} given)", { limit, count: seen.size }) });
  }
  return errors;
}

export const addressListErrors = (name, values) =>
  listErrors(name, values, { normalise: normaliseAddressEntry, violation: addressEntryViolation });
export const subjectListErrors = (name, values) =>
  listErrors(name, values, { normalise: normaliseSubjectEntry, violation: subjectEntryViolation, key: subjectKey });
export const mailboxListErrors = (name, values) =>
  listErrors(name, values, { normalise: normaliseAddressEntry, violation: mailboxViolation });

// --- forwarding (filters/forwarding.py) ----------------------------------------------------

function normaliseDestination(raw) {
  const value = pyStrip(raw);
  const at = value.lastIndexOf("@");
  return at < 0 ? value : `${value.slice(0, at)}@${value.slice(at + 1).toLowerCase()}`;
}

export function forwardingErrors(destinations, ownAddress) {
  const limit = R.forwarding.max_destinations;
  if (destinations.length > limit) {
    return [{ field: "destinations", message: T("at most {limit} forwarding destinations", { limit }) }];
  }
  const errors = [];
  const seen = new Set();
  destinations.forEach((item, index) => {
    const destination = normaliseDestination(item);
    if (!destination) return;
    const field = `destinations[${index}]`;
    const problem = emailViolation(destination);
    if (problem) { errors.push({ field, message: problem }); return; }
    const folded = destination.toLowerCase();
    if (folded === ownAddress.toLowerCase()) { errors.push({ field, message: T("cannot forward to the address itself") }); return; }
    if (seen.has(folded)) { errors.push({ field, message: T("{destination} is entered twice", { destination }) }); return; }
    seen.add(folded);
  });
  return errors;
}

// --- auto-reply (filters/auto_reply.py) ----------------------------------------------------

function messageProblem(value) {
  const textValue = value.replace(/\r\n?/g, "\n");
  const limit = R.auto_reply.max_message_chars;
  if (length(textValue) > limit) return T("must be at most {limit} characters", { limit });
  if ([...textValue].some((ch) => ch !== "\n" && ch !== "\t" && (ch.charCodeAt(0) < 32 || ch.charCodeAt(0) === 127))) {
    return T("cannot contain control characters");
  }
  return null;
}

export function autoReplyErrors({ enabled, special_senders, special_message, default_message }) {
  const errors = mailboxListErrors("special_senders", special_senders);
  const special = messageProblem(special_message);
  const fallback = messageProblem(default_message);
  if (special) errors.push({ field: "special_message", message: special });
  if (fallback) errors.push({ field: "default_message", message: fallback });
  if (enabled && !errors.length) {
    const hasSenders = special_senders.some((s) => normaliseAddressEntry(s));
    const hasSpecial = Boolean(pyStrip(special_message));
    if (hasSenders && !hasSpecial) {
      errors.push({ field: "special_message", message: T("enter the reply for the special senders") });
    } else if (!hasSpecial && !pyStrip(default_message)) {
      errors.push({ field: "default_message", message: T("enter a reply message to turn auto-reply on") });
    }
  }
  return errors;
}
