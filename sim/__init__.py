"""The storefront simulator and `loopwise simulate` (an HTTP client of a running server).

Reading guide:
  storefront   simulated visitors: segments, click and purchase probabilities, drift
  simulate     plays the storefront against a server over HTTP; learning-curve plots

Needs the `sim` extra (matplotlib, tqdm): `pip install 'loopwise[sim]'`. Imports engine
for the shared vocabulary; never api, agents or streams.
"""
