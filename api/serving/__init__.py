"""What a serving (API) process holds for its lifetime, opened in the app's lifespan.

Reading guide:
  state       the State: every store below, opened and closed together; API keys
  catalogs    versioned catalog storage (local RocksDB)
  replica     the model replica: applies training examples in log order, checkpoints
  follow      following a topic from stored offsets, without a consumer group
  mirror      a replica of a worker table (stock, profiles, popularity) from its changelog
  peers       what the other serving processes decided, from the decisions log
  decided     the decisions index: which event ids take rewards here, until when
  replays     event_id as an idempotency key: kept fingerprints and answers
  answers     a decision's answer, built from its logged records
  exposures   per-user exposures for frequency caps
  pseudonyms  keyed pseudonyms of user ids for logs and exposures
  outbox      a durable, bounded outbox: the API never waits on the broker
  store       the feature store's reads for a decision (user and product features)
"""
