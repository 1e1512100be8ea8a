"""Pure decision logic for Loopwise.

Reading guide, roughly in the order a decision uses them:
  errors          the one error root (EngineError) and its subclasses
  limits          request bounds (sizes, counts, depth) as a frozen value
  validate        small validators for decoded JSON; every error names its field path
  features        context/action features: validation and flattening into namespaces
  vwformat        VW text examples built so that no user byte changes their structure
  actions         an action: id, features, metadata and its cached VW action line
  learning        a catalog's learning settings as declared: validated, defaults epochs
  catalog         a catalog: actions, learning, constraints, feature spec; validation
  rules           the business-rule language: its reference, `compile_rule` and `Rule`
  ruleparser      rule text -> syntax tree (tokens, recursive descent, errors by column)
  ruletree        the syntax tree's nodes, rendered back to canonical text
  rulecompile     syntax tree -> closures `test(context, action) -> bool`
  rulebind        a rule bound to one request, its action-only parts memoised
  constraints     a catalog's constraints as values (the reference) and `apply`
  constraintspec  the "constraints" JSON validated into those values
  caps            frequency caps: the exposures that count, a slate's earlier slots
  adjust          pinned, boosts, exploration floor: the policy's pmf before sampling
  eligibility     a request's candidates and exclusions, checked against the catalog
  inline          actions a request sends with itself: checked, cached, logged, rebuilt
  policy          the policy step: what a decision asks of a policy, its guard, the fallback
  failover        a catalog's safe policy (uniform, first, priority) and when it answers
  breaker         the circuit breaker between a model and its decisions
  experiment      a catalog's experiment: arms, shares, sticky rendezvous assignment
  sampling        seeded sampling with exact propensities and an exploration floor
  slates          multi-slot answers, slot by slot, with exact conditional propensities
  decision        one decision: constraints, then the policy, then sampling
  records         the messages that travel: decisions, rewards, training examples
  join            reward join semantics: wait window, aggregation, default reward
  ledger          the bounded learned-event ledger that makes learning idempotent
  checkpoint      checkpoint encoding with sha256 verification
  behaviour       storefront behaviour events (views, carts, purchases), validated
  featurespec     what a catalog declares about stored features: aggregates, defaults
  profiles        the feature store's state: a profile, its cells, its encoding
  profilefold     behaviour events folded into profiles (the worker's transitions)
  profileread     a catalog's declared features read from profiles (serving)
  sequential      anytime-valid confidence sequences for live results
  results         an experiment's live results per arm, and its guardrail
  apprentice      what apprentice mode measured: agreement, the partly known value
  ope             off-policy estimators (IPS, SNIPS, DR) over tallies of logged rows
  evaluation      candidates replayed over the log into those tallies

May import: the standard library (but os and subprocess), numpy, msgspec. Never faust,
aiokafka, starlette, vowpalwabbit, rocksdict or yaml; never the environment, the clock or
the network (callers pass `now`). The import-linter contracts in pyproject.toml hold it.
"""
