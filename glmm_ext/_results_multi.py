"""Kept for `scale._many_multi`, which imports `keys_of` from here: the per-term results are `_results_terms`
and the term keys `_term_view.keys_of`."""
from ._term_view import keys_of  # noqa: F401
