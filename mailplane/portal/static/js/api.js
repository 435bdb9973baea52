// The public management API (SPEC §11), called with the bearer key kept in sessionStorage
// (gone when the tab closes).  Every error is thrown as ApiError carrying the SPEC §11
// body {error: {code, message, field}} so forms can show it next to the field.

const KEY = "mp.key";
const CONTRACT = "mp.contract";

export class ApiError extends Error {
  constructor(status, code, message, field) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field || null;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  get contract() { return sessionStorage.getItem(CONTRACT); },
  signIn(key, contract) {
    sessionStorage.setItem(KEY, key);
    sessionStorage.setItem(CONTRACT, contract);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(CONTRACT);
  },
};

export async function request(method, path, { body, headers = {}, key } = {}) {
  const init = {
    method,
    headers: { Accept: "application/json", Authorization: `Bearer ${key ?? session.key}`, ...headers },
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "network", String(exc), null);
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "error",
      error.message || `HTTP ${response.status}`, error.field);
  }
  return data;
}

const enc = encodeURIComponent;

export function contractPath(contract = session.contract) {
  return `/v1/contracts/${enc(contract)}`;
}

export function addressPath(address, suffix = "") {
  return `${contractPath()}/addresses/${enc(address)}${suffix}`;
}

export const api = {
  contract: (cn, key) => request("GET", contractPath(cn), { key }),
  me: (key) => request("GET", "/v1/me", { key }),
  row: (address) => request("GET", addressPath(address)),
  addresses: () => request("GET", `${contractPath()}/addresses`),
  candidates: (localPart, page) =>
    request("GET", `${contractPath()}/subdomain-candidates?local_part=${enc(localPart)}&page=${page}`),
  createAddress: (body, idempotencyKey) =>
    request("POST", `${contractPath()}/addresses`, { body, headers: { "Idempotency-Key": idempotencyKey } }),
  deleteAddress: (address) => request("DELETE", addressPath(address)),
  get: (address, setting) => request("GET", addressPath(address, `/${setting}`)),
  put: (address, setting, body) => request("PUT", addressPath(address, `/${setting}`), { body }),
  changePassword: (address, body) => request("POST", addressPath(address, "/password"), { body }),
  reissuePassword: (address) => request("POST", addressPath(address, "/password/reissue")),
  quarantine: (address) => request("GET", addressPath(address, "/quarantine")),
  quarantineItem: (address, id) => request("GET", addressPath(address, `/quarantine/${enc(id)}`)),
  release: (address, id) => request("POST", addressPath(address, `/quarantine/${enc(id)}/release`)),
  discard: (address, id) => request("DELETE", addressPath(address, `/quarantine/${enc(id)}`)),
};

/** The message without the "field: " prefix the API puts in front. */
export function bareMessage(error) {
  const prefix = error.field ? `${error.field}: ` : "";
  return error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message;
}
