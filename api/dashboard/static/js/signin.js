// Sign in: ask the API whose key this is (GET /v1/whoami), keep it for this tab.
import { call, Problem, remember, session } from "./api.js";
import { $, say } from "./dom.js";

const params = new URLSearchParams(location.search);
const next = params.get("next") || "";
// only back into the dashboard: a link cannot send a fresh key elsewhere
const target = next.startsWith("/ui/") && next !== "/ui/" ? next : "/ui/catalogs";

function go() {
  location.assign(target);
}

async function signIn(event) {
  event.preventDefault();
  const key = $("key").value.trim();
  if (!key) {
    say("key-problem", "Enter an API key.");
    return;
  }
  try {
    const { json } = await call("/v1/whoami", { key });
    if (json.role === "storefront") {
      say("key-problem", "This key has role storefront; the dashboard needs a marketer or admin key.");
      return;
    }
    remember(key, json.role, json.open);
    go();
  } catch (e) {
    if (!(e instanceof Problem)) throw e;
    say("key-problem", e.status === 401 ? "This key is not valid here." : e.detail);
  }
}

async function start() {
  if (session() && !params.get("reason")) {
    go(); // signed in already (the top bar's Sign out forgets the key)
    return;
  }
  if (params.get("reason")) say("key-problem", params.get("reason"));
  $("sign-in").addEventListener("submit", signIn);
  try {
    const { json } = await call("/v1/whoami", { key: "" });
    if (json.open) {
      $("open-note").hidden = false;
      $("continue-open").addEventListener("click", () => {
        remember("", "admin", true);
        go();
      });
    }
  } catch {
    // keys are configured (401): sign in with one
  }
  $("key").focus();
}

start();
