"""What the API and the worker processes share: settings, local stores, the broker.

Reading guide:
  settings     the frozen Settings, read once from the environment at the edge
  kv           the one adapter around rocksdict (local RocksDB key-value stores)
  broker       the embedded Tansu broker launcher, topic creation, the broker epoch
  objectstore  the embedded broker's log: an S3 endpoint that applies retention (a child)
  messages     reading a message off a topic: poisoned ones counted and skipped
  files        atomic file writes (tmp -> fsync -> rename -> fsync(dir))
  children     child processes that die with their parent

May import engine, aiokafka, rocksdict; never api, agents or sim.
"""
