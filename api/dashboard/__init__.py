"""The marketers' dashboard, served by the API process itself under /ui/.

Reading guide:
  routes   the HTML pages and the static files (none in the OpenAPI document)
  pages    each page's HTML: the shared layout and navigation, and the page's skeleton
  static/  the stylesheet and the vanilla JavaScript modules (no build step): the pages
           fill themselves from the JSON API with the key the user signed in with, kept
           in sessionStorage and sent as `Authorization: Bearer`. The pages hold no data,
           so they need no key themselves; every read and write goes through the API's
           own routes, validation and roles.

May import starlette only; never api.serving: it holds no state.
"""
