// The JSON API with the key this tab signed in with (sessionStorage), and its problems.
const STORE = "loopwise.dashboard";

export function session() {
  try {
    return JSON.parse(sessionStorage.getItem(STORE) || "null");
  } catch {
    return null;
  }
}

export function remember(key, role, open) {
  sessionStorage.setItem(STORE, JSON.stringify({ key, role, open }));
}

export function forget() {
  sessionStorage.removeItem(STORE);
}

// An RFC 9457 problem the API answered, or a network failure (status 0).
export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.title = body.title || "";
    this.detail = body.detail || this.message;
    this.field = body.field || null;
  }
}

export async function call(path, { method = "GET", body, type, ifMatch, key } = {}) {
  const headers = { Accept: "application/json" };
  const token = key !== undefined ? key : session()?.key;
  if (token) headers.Authorization = `Bearer ${token}`;
  if (body !== undefined) headers["Content-Type"] = type || "application/json";
  if (ifMatch !== undefined) headers["If-Match"] = `"${ifMatch}"`;
  let r;
  try {
    r = await fetch(path, { method, headers, body });
  } catch (e) {
    throw new Problem(0, { detail: `the API cannot be reached (${e.message})` });
  }
  const json = r.status === 204 ? null : await r.json().catch(() => ({}));
  if (!r.ok) {
    if (r.status === 401 && key === undefined) signInAgain("Your key was refused: sign in again.");
    throw new Problem(r.status, json || {});
  }
  return { status: r.status, json, etag: r.headers.get("ETag") };
}

export function signInAgain(reason) {
  forget();
  const next = location.pathname + location.search + location.hash;
  const q = new URLSearchParams({ next });
  if (reason) q.set("reason", reason);
  location.assign(`/ui/?${q}`);
}

// Every page but sign-in: the session, or null while the browser leaves to sign in (and
// comes back here afterwards); a page stops on null instead of throwing, since an uncaught
// error would race the navigation.
export function requireSession() {
  const s = session();
  if (!s) {
    signInAgain("");
    return null;
  }
  const who = document.getElementById("who");
  document.getElementById("who-role").textContent = s.open ? "anyone (open API)" : s.role;
  document.getElementById("sign-out").addEventListener("click", () => {
    forget();
    location.assign("/ui/");
  });
  who.hidden = false;
  return s;
}
