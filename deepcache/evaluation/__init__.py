"""Instruments that measure the product: FLOP-ideal and measured speed, quality metrics,
data-parallel sampling, the original DeepCache helper to compare against, and the example scripts' helpers.
"""
