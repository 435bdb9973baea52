// Hash routes (#/forwarding/<address>/confirm): every screen and every step of a flow has
// its own URL, so Back, Forward and reload keep the customer where they were.

let render = () => {};

export function setRenderer(callback) { render = callback; }

/** Navigate (a new history entry); draws at once when the hash is already there. */
export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** Replace the current entry (no new Back step); `silent` only rewrites the URL. */
export function replaceRoute(hash, { silent = false } = {}) {
  history.replaceState(history.state, "", hash);
  if (!silent) render();
}

/** ["forwarding", "taro@…", "confirm"] from "#/forwarding/taro%40…/confirm". */
export function currentRoute() {
  const parts = location.hash.replace(/^#\/?/, "").split("/").map((part) => {
    try { return decodeURIComponent(part); } catch { return part; }
  });
  return { name: parts[0] || "", params: parts.slice(1) };
}
