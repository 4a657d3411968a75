"""Near-duplicate grouping, so that the validation split measures unseen frames.

Capsule videos yield runs of almost identical frames, and exported data sets often hold the
same frame re-encoded. Exact content hashes miss those, so a random split puts one copy in
training and its twin in validation and the figures measure memory, not recognition (on the
WCEBleedGen frames a quarter of all images have such a twin). Images whose difference hash
(dHash, 256 bits) differs in at most ``max_distance`` bits are joined into one group, and the
split keeps every group on one side.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

HASH_SIDE = 16
# Rows of the pairwise distance table computed at once: bounds the temporary memory.
_BLOCK = 128


def difference_hashes(pixels: np.ndarray) -> np.ndarray:
    """dHash of uint8 RGB images (n, s, s, 3) -> packed bits (n, HASH_SIDE**2 / 8) uint8.

    Each bit says whether a pixel of the 17x16 grey thumbnail is brighter than its left
    neighbour: robust to re-encoding, scaling and small brightness changes.
    """
    bits = np.empty((len(pixels), HASH_SIDE * HASH_SIDE), dtype=bool)
    for row, image in enumerate(pixels):
        thumbnail = (
            Image.fromarray(image)
            .convert("L")
            .resize((HASH_SIDE + 1, HASH_SIDE), Image.Resampling.BILINEAR)
        )
        grey = np.asarray(thumbnail, dtype=np.int16)
        bits[row] = (grey[:, 1:] > grey[:, :-1]).ravel()
    return np.packbits(bits, axis=1)


def near_duplicate_groups(hashes: np.ndarray, max_distance: int) -> np.ndarray:
    """Group ids (n,) int: images linked by chains of hash distances <= ``max_distance``.

    Brute force over all pairs in blocks: O(n^2) popcounts, seconds for tens of thousands.
    """
    count = len(hashes)
    sources: list[np.ndarray] = []
    targets: list[np.ndarray] = []
    for start in range(0, count, _BLOCK):
        block = hashes[start : start + _BLOCK]
        distance = np.bitwise_count(block[:, None, :] ^ hashes[None, :, :]).sum(axis=2)
        rows, columns = np.nonzero(distance <= max_distance)
        later = columns > rows + start  # each pair once, no self-pairs
        sources.append(rows[later] + start)
        targets.append(columns[later])
    edges_from = np.concatenate(sources) if sources else np.zeros(0, np.int64)
    edges_to = np.concatenate(targets) if targets else np.zeros(0, np.int64)
    graph = coo_matrix(
        (np.ones(len(edges_from), dtype=np.int8), (edges_from, edges_to)), shape=(count, count)
    )
    _, labels = connected_components(graph, directed=False)
    return labels
