// The management API (SPEC §11) as the portal uses it: a server-side session in an HttpOnly
// cookie (SPEC §10), the CSRF token echoed on every change, and Accept-Language set to the
// page's language so every message comes back in it.  Errors are thrown as ApiError with
// the server's {code, message, field, details}; the page shows the server's message as is.

import { lang } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, code, message, field, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
    this.details = details || [];
  }
}

/** Who is signed in (GET /v1/session); kept in memory only. */
export const session = {
  info: null,
  get signedIn() { return Boolean(this.info && this.info.signed_in); },
  get role() { return this.info ? this.info.role : null; },
  get contract() { return this.info ? this.info.contract : null; },
  get address() { return this.info ? this.info.address : null; },
  get isMailbox() { return this.role === "mailbox"; },
  clear() { this.info = null; },
};

let onExpired = () => {};
/** Called when the server says the session is gone (401): the page shows sign-in. */
export function whenExpired(callback) { onExpired = callback; }

export async function request(method, path, { body, headers = {}, raw = false } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json", "Accept-Language": lang(), ...headers },
  };
  if (method !== "GET" && session.info && session.info.csrf_token) {
    init.headers["X-CSRF-Token"] = session.info.csrf_token;
  }
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "network", lang() === "ja"
      ? "サーバーに接続できません。通信環境をご確認ください。"
      : "The server cannot be reached. Check your connection.", null);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = raw ? await response.text() : await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    const failure = new ApiError(response.status, error.code || "error",
      error.message || `HTTP ${response.status}`, error.field, error.details);
    if (response.status === 401 && session.signedIn && path !== "/v1/session") {
      session.clear();
      onExpired(failure);
    }
    throw failure;
  }
  return data;
}

const enc = encodeURIComponent;
export const contractPath = () => `/v1/contracts/${enc(session.contract)}`;
export const addressPath = (address, suffix = "") => `${contractPath()}/addresses/${enc(address)}${suffix}`;

export const api = {
  whoami: () => request("GET", "/v1/session"),
  signIn: (body) => request("POST", "/v1/session", { body }),
  signOut: () => request("DELETE", "/v1/session"),
  rules: () => request("GET", "/v1/rules"),
  contract: () => request("GET", contractPath()),
  addresses: () => request("GET", `${contractPath()}/addresses`),
  row: (address) => request("GET", addressPath(address)),
  candidates: (localPart, page) =>
    request("GET", `${contractPath()}/subdomain-candidates?local_part=${enc(localPart)}&page=${page}`),
  createAddress: (body, idempotencyKey) =>
    request("POST", `${contractPath()}/addresses`, { body, headers: { "Idempotency-Key": idempotencyKey } }),
  deleteAddress: (address) => request("DELETE", addressPath(address)),
  get: (address, setting) => request("GET", addressPath(address, `/${setting}`)),
  put: (address, setting, body) => request("PUT", addressPath(address, `/${setting}`), { body }),
  changePassword: (address, body) => request("POST", addressPath(address, "/password"), { body }),
  reissuePassword: (address) => request("POST", addressPath(address, "/password/reissue")),
  setup: (address) => request("GET", addressPath(address, "/client-setup")),
  profileUrl: (address) => addressPath(address, "/client-setup.mobileconfig"),
  quarantine: (address) => request("GET", addressPath(address, "/quarantine")),
  quarantineItem: (address, id) => request("GET", addressPath(address, `/quarantine/${enc(id)}`)),
  release: (address, id) => request("POST", addressPath(address, `/quarantine/${enc(id)}/release`)),
  discard: (address, id) => request("DELETE", addressPath(address, `/quarantine/${enc(id)}`)),
  // the account around the settings (SPEC §9a)
  startRecovery: (customerNumber) => request("POST", "/v1/recovery", { body: { customer_number: customerNumber } }),
  finishRecovery: (body) => request("POST", "/v1/recovery/verify", { body }),
  changeContractPassword: (body) => request("POST", `${contractPath()}/password/change`, { body }),
  startContactChange: (email) =>
    request("POST", `${contractPath()}/contact-email/verification`, { body: { contact_email: email } }),
  checkContactCode: (code) => request("POST", `${contractPath()}/contact-email/verification/check`, { body: { code } }),
  confirmContactChange: (code) => request("PUT", `${contractPath()}/contact-email`, { body: { code } }),
  terminationOptions: () => request("GET", `${contractPath()}/termination`),
  requestTermination: (body) => request("POST", `${contractPath()}/termination`, { body }),
  withdrawTermination: () => request("DELETE", `${contractPath()}/termination`),
  billing: () => request("GET", `${contractPath()}/billing`),
};
