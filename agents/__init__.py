"""The Faust worker process: joins decisions and rewards, keeps stock and profiles.

Reading guide:
  worker     the Faust app: the join, stock and profile agents over RocksDB tables,
             recovery from checkpoints and the broker epoch, and `run`
  profiler   the profile agent's logic: behaviour events into per-user profiles

Runs as `loopwise worker`. May import engine, policies, streams, faust, aiokafka; never
api or sim (the serving process and the worker share only streams and the topics).
"""
