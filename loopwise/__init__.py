"""The command line: `loopwise up | api | worker | broker | simulate`, and the supervisor
that runs the processes (used by the CLI, the tests and the benchmarks alike)."""
