"""Each row's group as an integer code (labels sorted) and the rows' layout by group (runs, the sort by group).

Group codes are the first thing every model builds from the data; for text labels held by Arrow (pandas' ``str``
columns) they come from Arrow's kernels rather than pandas' object hashing, and labels that all write integers
(ids such as ``"1017"``) from their values.
"""
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..engine._segments import group_starts

#: the largest span of integer labels (beyond the number of rows) coded through a table indexed by value
_TABLE_SPAN = 1 << 16
#: the smallest integer whose hexadecimal text ("0xf4240") is not longer than its decimal one ("1000000")
_HEX_SHORTEST = 10**6


def group_codes(groups):
    """(codes, labels): each row's group as an index into ``labels`` (np.intp), the labels sorted when they can
    be (Python's order, as ``pd.factorize(sort=True)``), so that relabelling only permutes groups."""
    codes, labels, _ = counted_group_codes(groups)
    return codes, labels


def counted_group_codes(groups):
    """`group_codes` and the rows per group."""
    values = groups if isinstance(groups, pd.Series) else pd.Series(groups)  # (the index plays no part)
    found = _arrow_text_codes(values)
    if found is not None:
        codes, labels, counts = found
    else:
        try:
            codes, labels = pd.factorize(values, sort=True)
        except TypeError:  # labels of mixed types
            codes, labels = pd.factorize(values.astype(str), sort=True)
        codes, labels, counts = codes.astype(np.intp, copy=False), np.asarray(labels), None
    return codes, labels, np.bincount(codes, minlength=len(labels)) if counts is None else counts


def _arrow_text_codes(values):
    """(codes, labels, counts or None) of text labels held by Arrow (``str`` read by pandas' CSV reader): from
    the labels' integer values when they all write integers (`_integer_text_codes`), else from Arrow's
    dictionary encoding with its few labels sorted after; None for other labels, or missing ones."""
    if not (isinstance(values.dtype, pd.StringDtype) and str(values.dtype.storage).startswith("pyarrow")):
        return None
    import pyarrow.compute as pc

    chunks = values.array.__arrow_array__()  # (the array's own Arrow data, no copy)
    if len(values) == 0 or chunks.null_count:
        return None
    found = _integer_text_codes(chunks)
    if found is not None:
        return found
    text = chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()  # (one dictionary to build)
    encoded = text.dictionary_encode()
    order = pc.array_sort_indices(encoded.dictionary).to_numpy()  # (UTF-8 byte order = code point order = str's)
    rank = _rank(order)
    labels = encoded.dictionary.to_numpy(zero_copy_only=False)[order]
    return rank.take(encoded.indices.to_numpy(zero_copy_only=False)), labels, None


def _integer_text_codes(chunks):
    """(codes, labels, counts) of Arrow text (a ChunkedArray) whose labels all write integers the canonical way
    (``"17"``, ``"-3"``: no ``+``, no leading zero, no space), from the integer values (a table indexed by value
    when they span few values, else numpy's unique); None otherwise.

    A label that writes its integer any other decimal way is longer than the canonical text (hexadecimal, which
    Arrow's cast reads too, is refused first where it could be as short), so the labels are all canonical exactly
    when their total length (Arrow's offsets: O(1) a chunk) equals the canonical texts' total over the distinct
    values; then two labels are equal exactly when their values are.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    large = pa.types.is_large_string(chunks.type)
    if not (large or pa.types.is_string(chunks.type)):
        return None
    try:
        ints = pc.cast(chunks, pa.int64()).to_numpy()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # (not integers, or beyond int64)
        return None
    low, high = int(ints.min()), int(ints.max())
    by_table = high - low <= len(ints) + _TABLE_SPAN
    if by_table:
        shifted = ints - low  # (writable: bincount and take copy a read-only index array, as Arrow's is)
        counts = np.bincount(shifted)
        present = np.flatnonzero(counts)
        values, counts = present + low, counts[present]
    else:
        values, inverse, counts = np.unique(ints, return_inverse=True, return_counts=True)
    labels = np.array([str(v) for v in values.tolist()], dtype=object)
    text_length = 0  # (bytes: a canonical label is ASCII)
    for chunk in chunks.chunks:
        offsets = np.frombuffer(chunk.buffers()[1], np.int64 if large else np.int32)
        start, stop = int(offsets[chunk.offset]), int(offsets[chunk.offset + len(chunk)])
        text_length += stop - start
        # Arrow's cast also reads hexadecimal ("0xf4240"), which from 10^6 on can be as short as the decimal text
        # ("1000000") or shorter: the length test holds for decimal spellings only, so no label may hold an x
        if high >= _HEX_SHORTEST and _holds_x(chunk.buffers()[2], start, stop):
            return None
    if text_length != int(counts @ np.array([len(s) for s in labels])):
        return None
    order = np.argsort(labels, kind="stable")  # (text order: "10" before "9")
    rank = _rank(order)
    if by_table:
        table = np.zeros(high - low + 1, np.intp)
        table[present] = rank
        return np.take(table, shifted, out=shifted, mode="clip"), labels[order], counts[order]  # (in place)
    return rank.take(inverse.reshape(-1)), labels[order], counts[order]


def _rank(order):
    """Each label's position in the sorted labels, from the sort `order` (its inverse permutation)."""
    rank = np.empty(len(order), np.intp)
    rank[order] = np.arange(len(order))
    return rank


def _holds_x(data, start, stop):
    """Bytes start..stop of an Arrow data buffer hold an "x" or "X" (memchr over one copy: ~1 ms for 1e6 ids,
    where Arrow's case-blind substring match takes ~40)."""
    raw = np.frombuffer(data, np.uint8, count=stop - start, offset=start).tobytes()
    return raw.find(b"x") >= 0 or raw.find(b"X") >= 0


@dataclass
class GroupRuns:
    """The runs of equal group codes in row order, one per group: run k holds rows
    starts[k] .. starts[k] + counts[k] - 1, all of group codes[k]."""

    codes: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @property
    def in_code_order(self) -> bool:
        """The runs come in group-code order: the rows are sorted by group."""
        return bool(np.all(self.codes == np.arange(len(self.codes))))


def group_runs(codes, n_groups):
    """`GroupRuns` when every group's rows are contiguous (rows that come grouped: as many runs of equal codes
    as groups), else None.  One O(n) pass."""
    n = len(codes)
    if n == 0 or n_groups == 0:
        return None
    differs = codes[1:] != codes[:-1]
    if np.count_nonzero(differs) + 1 != n_groups:  # (every code occurs: n_groups runs means one run per group)
        return None
    change = np.flatnonzero(differs)
    starts = np.concatenate(([0], change + 1)).astype(np.intp, copy=False)
    counts = np.diff(np.append(starts, n))
    return GroupRuns(np.asarray(codes[starts], dtype=np.intp), starts, counts)


def group_order(codes, n_groups, runs=None):
    """The stable sort of the rows by group code.  Rows in one run per group (`group_runs`): built from the
    runs in O(n), the identity when they are sorted; else numpy's radix sort on 16-bit codes where they fit
    (O(n); the comparison sort of 64-bit codes is ~7x slower on 1e6 shuffled rows), the same permutation."""
    n = len(codes)
    if runs is not None:
        if runs.in_code_order:
            return np.arange(n, dtype=np.intp)
        first = np.empty(len(runs.codes), dtype=np.intp)
        first[runs.codes] = runs.starts
        counts = np.empty(len(runs.codes), dtype=np.intp)
        counts[runs.codes] = runs.counts
        # steps of 1 within a group, a jump to the next group's first row at its sorted start: one n-sized array
        order = np.ones(n, dtype=np.intp)
        order[0] = first[0]
        order[group_starts(counts)[1:]] = first[1:] - (first[:-1] + counts[:-1] - 1)
        return np.cumsum(order, out=order)
    if n_groups <= np.iinfo(np.uint16).max + 1:
        return np.argsort(codes.astype(np.uint16), kind="stable").astype(np.intp, copy=False)
    return np.argsort(codes, kind="stable")
