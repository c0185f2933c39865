"""Where the labels of an overlay go: next to their point where there is room, farther out with a leader line
where it is crowded, never over another label, a landmark dot or a ground-truth ring.

:func:`place_labels` is geometry only (boxes in pixels), so it is tested without drawing: for each anchor it tries
positions on rings of growing distance around it (eight directions each), takes the first that is inside the
image, overlaps nothing placed or marked so far, and lies nearer its own point than any other point (so that a
label is not read as a neighbour's); where no position is both, the nearest that overlaps nothing (its leader
line says whose it is), and only where nothing is free, the one that overlaps least.
"""

from __future__ import annotations

import math

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive ends)

DIRECTIONS = ((1, -1), (1, 1), (-1, -1), (-1, 1), (1, 0), (-1, 0), (0, -1), (0, 1))  # right first, as one reads


def overlap(a: Box, b: Box) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def point_distance(p: tuple[float, float], b: Box) -> float:
    dx, dy = max(b[0] - p[0], 0, p[0] - b[2]), max(b[1] - p[1], 0, p[1] - b[3])
    return math.hypot(dx, dy)


def place_labels(anchors: list[tuple[float, float]], sizes: list[tuple[int, int]], obstacles: list[Box],
                 image_size: tuple[int, int], gap: int, rings: int = 24) -> list[tuple[Box, bool]]:
    """One box per anchor, ``sizes`` ``(w, h)``; ``obstacles`` (dots, rings, earlier labels) are avoided and the
    placed labels join them; ``image_size`` ``(H, W)``. Returns ``(box, needs_leader)``: a leader line where the
    box sits farther than one ``gap`` from its point."""
    height, width = image_size
    taken = list(obstacles)
    placed = []
    for i, ((x, y), (w, h)) in enumerate(zip(anchors, sizes)):
        others = [a for j, a in enumerate(anchors) if j != i]
        best, best_cost = None, (math.inf, True)  # (area covered, misleading): covering nothing comes first
        for ring in range(1, rings + 1):
            d = gap * (1 + 2 * (ring - 1))
            for dx, dy in DIRECTIONS:
                bx = x + dx * d - (w if dx < 0 else 0) - (w // 2 if dx == 0 else 0)
                by = y + dy * d - (h if dy < 0 else 0) - (h // 2 if dy == 0 else 0)
                bx, by = int(round(min(max(bx, 0), max(0, width - w)))), int(round(min(max(by, 0), max(0, height - h))))
                box = (bx, by, bx + w, by + h)
                own = point_distance((x, y), box)
                cost = (sum(overlap(box, t) for t in taken), any(point_distance(o, box) < own for o in others))
                if cost < best_cost:
                    best, best_cost = box, cost
                if cost == (0, False):
                    break
            if best_cost == (0, False):
                break
        taken.append(best)
        placed.append((best, point_distance((x, y), best) > gap * 1.5))
    return placed
