"""Policies: one small interface and its implementations.

  base     the Policy protocol (`distribution(features, eligible) -> pmf`, `learn(example)`)
           and the Example a policy learns from
  uniform  uniform random over the eligible actions (the safe fallback and a baseline)
  vw       the Vowpal Wabbit contextual bandit: the only module that imports vowpalwabbit,
           and the one that turns learning settings into VW's command line
  linucb   disjoint LinUCB in numpy: a contextual catalog policy and baseline
  thompson Beta-Bernoulli Thompson sampling per action: a non-contextual one
  registry builds (or loads) the policy a catalog's learning settings ask for, and keys
           its model

A policy never sees the catalog and never samples: constraints come before it, sampling
(engine.sampling) after it. May import engine, numpy and (vw.py only) vowpalwabbit.
"""
