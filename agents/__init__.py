"""The Faust worker process: joins decisions and rewards, keeps stock and profiles.

Reading guide:
  worker     `run`: prepare the topics, recover, run the app (`loopwise worker`)
  app        the Faust app: its topics and RocksDB tables, the four agents, the timers
  guard      every agent handles one message at a time; one that raises is logged and
             counted (`failed`), and the agent goes on
  joiner     the join agent's logic: decisions and rewards into training examples
  stock      the stock agent's logic: the newest level of each SKU
  profiler   the profile and popularity agents' logic: behaviour events into profiles
  recovery   exact table recovery, the rebuilt join after an unclean stop, a lost log
  tuning     process-wide Faust and aiokafka settings (fetch wait, RocksDB memory)

Runs as `loopwise worker`. May import engine, policies, streams, faust, aiokafka; never
api or sim (the serving process and the worker share only streams and the topics).
"""
