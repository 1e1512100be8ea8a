"""The storefront simulator, `loopwise simulate` and `loopwise tour` (HTTP clients of a
running server).

Reading guide:
  storefront   the ground truth: actions, segments, visitors, the click model, its catalog
  environments the named storefronts (segments, segments50, intent) and their registry
  shoppers     returning users in sessions with an intent, for the intent storefront
  checks       the argument checks the storefronts share
  simulate     `run`: plays the storefront against a server over HTTP, visitor by visitor
  config       `SimConfig`, what one run is, validated
  server       the Loopwise API as the simulator calls it, one function per route
  answers      reading a decide answer: chosen, ranking, removed, what the features saw
  tally        what each decision did, shared by the concurrent workers
  shop         the shop's own stock ledger and the inventory events it posts
  probes       what the learned model shows each segment once the run is over
  results      `SimResult`, made from the tally, and its windows
  plots        the learning-curve PNG
  report       the summary in words
  tour         `loopwise tour`: an A/B, an evaluation, apprentice mode and a failover
  tour_config  `TourConfig`, what one tour is, validated
  tour_truth   the click model's truth for what the tour measures, on the same decisions
  tour_result  `Tour`, what it measured beside the truth, as JSON and in words
  tour_plot    the tour's four-panel PNG

Needs the `sim` extra (matplotlib, tqdm): `pip install 'loopwise[sim]'`. Imports engine
for the shared vocabulary; never api, agents or streams.
"""
