import numpy as np
import pandas as pd

from memorization_curvature import figures


def test_grid_places_each_ranked_image_in_its_tile():
    # 30 images of 6x6, image i filled with the value i, so every tile says which image it shows
    images = np.repeat(np.arange(30, dtype=np.uint8), 36).reshape(30, 1, 6, 6)
    rows = pd.DataFrame({"index": [7, 3, 29, 0, 12, 5, 18, 21, 2, 9, 11, 4],
                         "given_label": 0, "true_label": 0, "rank": range(1, 13), "curvature": 1.0})
    fig, numbers = figures.image_grid(images, rows, np.array(["a"]), pixel_max=29.0, title="t")
    shown = fig.axes[0].images[0].get_array()  # the grid as displayed, (H', W', 3) in [0, 1]
    gap = 3  # max(2, 6 // 2)
    for position, index in enumerate(rows["index"]):
        r, c = divmod(position, 10)
        tile = shown[gap + r * (6 + gap): gap + r * (6 + gap) + 6, gap + c * (6 + gap): gap + c * (6 + gap) + 6]
        assert np.allclose(tile, index / 29.0), (position, index)
    assert numbers["index"].tolist() == rows["index"].tolist()
    assert numbers["position"].tolist() == list(range(1, 13))


def test_selections():
    table = pd.DataFrame({"index": range(6), "given_label": [0, 1, 0, 1, 2, 2], "true_label": 0,
                          "corrupted": False, "curvature": [5.0, 1.0, 3.0, 4.0, 0.5, 2.0]})
    table["rank"] = table["curvature"].rank(ascending=False).astype(int)
    assert figures.highest(table, 2)["index"].tolist() == [0, 3]
    assert figures.lowest(table, 2)["index"].tolist() == [4, 1]
    assert figures.highest_per_class(table)["index"].tolist() == [0, 3, 5]
