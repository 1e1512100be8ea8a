"""The streaming side of Loopwise: Kafka topics, Faust agents, RocksDB state.

Reading guide:
  settings     the frozen Settings, read once from the environment at the edge
  kv           the one adapter around rocksdict (local RocksDB key-value stores)
  broker       the embedded Tansu broker launcher, topic creation, the broker epoch
  worker       the Faust app: the join, stock and profile agents over RocksDB tables
  profiler     the profile agent's logic: behaviour events into per-user profiles
  mirror       a serving process's replica of a worker table (stock, profiles)
  messages     reading a message in an agent: poisoned ones counted and skipped
  outbox       a durable, bounded outbox: the API never waits on Kafka
  catalogs     versioned catalog storage
  replica      the model replica: applies training examples in log order, checkpoints
  files        atomic file writes (tmp -> fsync -> rename -> fsync(dir))

May import engine, policies, faust, aiokafka, rocksdict. Never starlette or api.
"""
