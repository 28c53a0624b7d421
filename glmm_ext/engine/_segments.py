"""Per-group segment operations on rows sorted by group: the random-intercept structure in O(n)."""
import numpy as np


def group_sums(values, starts):
    """Sum of `values` over each group's rows: S_j = sum_{i in j} v_i (rows sorted by group)."""
    return np.add.reduceat(values, starts, axis=0)


def to_rows(group_values, counts):
    """Broadcast one value per group to that group's rows (rows sorted by group)."""
    return np.repeat(group_values, counts, axis=0)


def group_starts(counts):
    """Index of each group's first row, given the group sizes in sorted order."""
    return np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.intp)
