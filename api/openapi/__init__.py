"""The OpenAPI 3.1 document of the API, built from the types the routes parse.

- `operations`: the declarative table of the `/v1` operations (path, method, role, request
  type, responses, examples); `personalizer` the same for every Personalizer mount.
- `schemas`: the components: the request Structs as msgspec renders them (JSON Schema
  2020-12), the configured limits added to them (`limits`), and the bodies the engine
  validates as plain objects (catalogs, experiments, evaluations).
- `answers`: the answers' shapes, as Structs for documentation only.
- `problems`: every problem type, and the problem+json responses of each status.
- `document`: the whole document for a `Limits`; `page` renders it as HTML; `routes`
  serves both (`GET /openapi.json`, `GET /docs`).

Imports the routes' request types and error classes, never the other way round: only
`api.app` mounts `routes`.
"""
