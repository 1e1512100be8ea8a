"""The Personalizer-compatible API: Azure AI Personalizer's REST API as a thin adapter
onto Loopwise's own routes, so that its official SDKs work by changing only the endpoint
and the key.

Reading guide:

- `dialects`: the three API versions served (`v1.0`, `v1.1-preview.3`, and the
  `2022-09-01-preview` that `azure-ai-personalizer` sends as `?api-version=`), and how a
  URL names its loop (`/loops/{loop}/personalizer/...`, or the default loop).
- `errors`: Loopwise's errors as Personalizer's `{"error": {"code", "message"}}`.
- `bodies`: the request bodies as msgspec Structs, parsed once at the edge.
- `features`: Personalizer's lists of feature objects as Loopwise namespaces.
- `durations`: ISO 8601 (and .NET TimeSpan) durations.
- `loops`: a loop is a catalog, created on first use; `extras`: what a loop's
  configuration says that no catalog setting holds.
- `policy`: VW argument strings to and from a catalog's learning settings.
- `configuration`: the service configuration to and from a catalog.
- `rank`, `events`, `admin`, `evaluations`: the route handlers; `routes` mounts them.

May import: api (its routes' helpers and api.serving), engine, policies, streams. Nothing in
api.serving imports it.
"""
