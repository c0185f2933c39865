"""Overlay legibility: on a crowded layout no two labels overlap and none covers a landmark dot or a ground-truth
ring; leader lines where a label had to move; the title strip says which analysis lines are left out."""

from __future__ import annotations

import numpy as np

from cephalo.visualize.labels import overlap
from cephalo.visualize.overlay import _Style, draw_overlay, label_layout
from tests.analysis.test_analysis import ISBI, isbi_image


def crowded(seed: int = 0, n: int = 19) -> tuple[np.ndarray, np.ndarray]:
    """``n`` landmarks packed into a 120 px square of a 500 px image, each with a ring 4-12 px away."""
    rng = np.random.default_rng(seed)
    predicted = rng.uniform(190, 310, (n, 2))
    truth = predicted + rng.uniform(-12, 12, (n, 2))
    return predicted, truth


def test_no_two_labels_overlap_and_none_covers_a_dot_or_a_ring_on_a_crowded_layout():
    shape = (500, 500)
    for seed in range(5):
        predicted, truth = crowded(seed)
        layout = label_layout(predicted, ISBI, truth, shape)
        boxes = [box for _, _, box, _ in layout]
        assert len(boxes) == len(ISBI)
        for i, a in enumerate(boxes):
            assert 0 <= a[0] and 0 <= a[1] and a[2] <= shape[1] and a[3] <= shape[0]
            for b in boxes[i + 1:]:
                assert overlap(a, b) == 0, (seed, a, b)
        style = _Style(shape)
        ring = style.radius + style.thick + (style.thick + 1) // 2  # drawn at r + thick, thick wide
        marks = [(p, style.radius) for p in predicted] + [(t, ring) for t in truth]
        for (x, y), r in marks:  # every dot and every ring stays visible
            mark = (round(x) - r, round(y) - r, round(x) + r + 1, round(y) + r + 1)
            assert all(overlap(mark, box) == 0 for box in boxes), (seed, (x, y))
        assert any(leader for *_, leader in layout)  # crowded: some labels moved out on a leader line


def test_line_labels_are_placed_with_the_landmarks_and_missing_lines_are_named():
    image = np.full((2400, 1935), 120, np.uint8)
    canvas = draw_overlay(image, isbi_image()[0], ISBI, lines=True, title="001.jpg", values=["SNA 82.0°"])
    assert canvas.shape[0] > 2400 and canvas.shape[1] > 1935  # a title strip above, a panel on the right
    from cephalo.visualize.analysis_lines import analysis_lines

    lines, missing = analysis_lines(isbi_image()[0], ISBI)
    assert {line.label for line in lines} == {"S-N", "FH", "MP", "PP", "N-Pog", "A-B"}
    assert missing == ["U1: the landmark set has no UIA", "L1: the landmark set has no LIA"]
    layout = label_layout(isbi_image()[0], ISBI, None, image.shape, lines)
    boxes = [box for _, _, box, _ in layout]
    assert len(boxes) == len(ISBI) + len(lines)
    assert all(overlap(a, b) == 0 for i, a in enumerate(boxes) for b in boxes[i + 1:])
