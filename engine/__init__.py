"""Pure decision logic for Loopwise.

Reading guide:
  errors       the one error root (EngineError) and its subclasses
  limits       request bounds (sizes, counts, depth) as a frozen value
  features     context/action features: validation and flattening into namespaces
  vwformat     VW text examples built so that no user byte changes their structure
  actions      an action: id, features, metadata and its cached VW action line
  learning     a catalog's learning settings as declared: validated, with defaults epochs
  catalog      a catalog: actions, learning, constraints, feature spec; validation, versions
  sampling     seeded sampling with exact propensities and an exploration floor
  records      the messages that travel: decisions, rewards, training examples
  join         reward join semantics: wait window, aggregation, default reward
  ledger       the bounded learned-event ledger that makes learning idempotent
  checkpoint   checkpoint encoding with sha256 verification
  behaviour    storefront behaviour events (views, carts, purchases), validated
  profiles     the feature store: per-user/session profiles, their features, the spec
  simulation   ground-truth storefronts for `loopwise simulate` and benchmarks

May import: the standard library, numpy, msgspec, yaml. Never faust, starlette or
vowpalwabbit; never the environment, the clock or the network (callers pass `now`).
"""
