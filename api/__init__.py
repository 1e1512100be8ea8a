"""The API process: the Starlette routes, and (in api.serving) what a serving process holds.

Reading guide:
  app        the Starlette app factory (routes, lifespan, error mapping)
  requests   typed request bodies (msgspec Structs), parsed once at the edge
  bodies     bounded body reading and decoding, JSON and YAML alike
  bounds     the bounds every decoded body keeps (depth, values, numbers, types)
  yamlbody   YAML bodies, composed so that they cannot grow (no aliases)
  problems   RFC 9457 problem+json responses for every EngineError
  decide     POST /v1/decide: parse -> context -> decide -> log -> respond
             (decide_request: the same for a typed request, from any front end)
  rewards    POST /v1/rewards (any serving process takes any decision's rewards)
  activate   POST /v1/events/{id}/activate: a deferred decision may be learned
  events     POST /v1/events (inventory and behaviour), GET /v1/inventory/{sku}
  users      the feature store's user routes, and erasure
  catalogs   PUT/GET/DELETE /v1/catalogs/{name}, GET /v1/catalogs
  versions   a catalog's version history: GET /v1/catalogs/{name}/versions[/{version}]
  whoami     GET /v1/whoami: the role of the key sent
  ops        /healthz, /readyz, /metrics, /v1/models/{catalog}, /v1/events/{id}
  dashboard/ the marketers' dashboard under /ui/: pages and static files, no state
  serving/   the serving state: model replica, catalogs, exposures, outbox, table
             mirrors, the decisions-log follower (peers), replays, pseudonyms

Runs as `loopwise api`. May import engine, policies, streams, starlette; never agents or
sim. Routes import api.serving, never the other way round.
"""
