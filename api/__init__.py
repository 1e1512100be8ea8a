"""The HTTP side of Loopwise and its command line.

Reading guide:
  problems   RFC 9457 problem+json responses for every EngineError
  bodies     bounded body reading and JSON decoding (oversized bodies refused early)
  state      the lifespan-held resources: stores, outbox, model replica
  decide     POST /v1/decide: features -> eligible -> policy -> sampling -> log
  rewards    POST /v1/rewards
  events     POST /v1/events (inventory and behaviour), GET /v1/inventory/{sku}
  users      GET /v1/users/{id}/features, DELETE /v1/users/{id} (erasure)
  catalogs   PUT/GET/DELETE /v1/catalogs/{name}, GET /v1/catalogs
  ops        /healthz, /readyz, /metrics, /v1/models/{catalog}, /v1/events/{id}
  app        the Starlette app factory (routes, lifespan, error mapping)
  cli        `loopwise up | api | worker | broker | simulate`
  simulate   a simulated storefront that plays against a running server

Routes are thin: parse, call engine/policies, emit to the outbox, respond.
May import engine, policies, agents, starlette.
"""
