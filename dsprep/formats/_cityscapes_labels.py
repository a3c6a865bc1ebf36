"""The Cityscapes label table, as data.

Copied row by row from cityscapesScripts ``helpers/labels.py`` (mcordts/
cityscapesScripts @0bcc4a7), as quoted in ``formats.md`` section 4. Columns:
name, id, trainId, category, catId, hasInstances, ignoreInEval, color.

- ``trainId`` 255 means "ignore" in training; ``license plate`` has id and
  trainId -1 and is never drawn into label images.
- The inverse trainId lookup keeps the *first* label of a trainId
  (labels.py builds it over ``reversed(labels)``), so trainId 255 -> 0
  ``unlabeled``.
"""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["LABELS", "Label", "BY_ID", "BY_NAME", "id_to_train_id_lut", "train_id_to_id_lut",
           "INSTANCE_CLASS_IDS", "EVAL_INSTANCE_CLASS_IDS", "IGNORE_TRAIN_ID"]

IGNORE_TRAIN_ID = 255


class Label(NamedTuple):
    name: str
    id: int
    trainId: int
    category: str
    catId: int
    hasInstances: bool
    ignoreInEval: bool
    color: tuple[int, int, int]


F, T = False, True
LABELS: tuple[Label, ...] = (
    Label("unlabeled", 0, 255, "void", 0, F, T, (0, 0, 0)),
    Label("ego vehicle", 1, 255, "void", 0, F, T, (0, 0, 0)),
    Label("rectification border", 2, 255, "void", 0, F, T, (0, 0, 0)),
    Label("out of roi", 3, 255, "void", 0, F, T, (0, 0, 0)),
    Label("static", 4, 255, "void", 0, F, T, (0, 0, 0)),
    Label("dynamic", 5, 255, "void", 0, F, T, (111, 74, 0)),
    Label("ground", 6, 255, "void", 0, F, T, (81, 0, 81)),
    Label("road", 7, 0, "flat", 1, F, F, (128, 64, 128)),
    Label("sidewalk", 8, 1, "flat", 1, F, F, (244, 35, 232)),
    Label("parking", 9, 255, "flat", 1, F, T, (250, 170, 160)),
    Label("rail track", 10, 255, "flat", 1, F, T, (230, 150, 140)),
    Label("building", 11, 2, "construction", 2, F, F, (70, 70, 70)),
    Label("wall", 12, 3, "construction", 2, F, F, (102, 102, 156)),
    Label("fence", 13, 4, "construction", 2, F, F, (190, 153, 153)),
    Label("guard rail", 14, 255, "construction", 2, F, T, (180, 165, 180)),
    Label("bridge", 15, 255, "construction", 2, F, T, (150, 100, 100)),
    Label("tunnel", 16, 255, "construction", 2, F, T, (150, 120, 90)),
    Label("pole", 17, 5, "object", 3, F, F, (153, 153, 153)),
    Label("polegroup", 18, 255, "object", 3, F, T, (153, 153, 153)),
    Label("traffic light", 19, 6, "object", 3, F, F, (250, 170, 30)),
    Label("traffic sign", 20, 7, "object", 3, F, F, (220, 220, 0)),
    Label("vegetation", 21, 8, "nature", 4, F, F, (107, 142, 35)),
    Label("terrain", 22, 9, "nature", 4, F, F, (152, 251, 152)),
    Label("sky", 23, 10, "sky", 5, F, F, (70, 130, 180)),
    Label("person", 24, 11, "human", 6, T, F, (220, 20, 60)),
    Label("rider", 25, 12, "human", 6, T, F, (255, 0, 0)),
    Label("car", 26, 13, "vehicle", 7, T, F, (0, 0, 142)),
    Label("truck", 27, 14, "vehicle", 7, T, F, (0, 0, 70)),
    Label("bus", 28, 15, "vehicle", 7, T, F, (0, 60, 100)),
    Label("caravan", 29, 255, "vehicle", 7, T, T, (0, 0, 90)),
    Label("trailer", 30, 255, "vehicle", 7, T, T, (0, 0, 110)),
    Label("train", 31, 16, "vehicle", 7, T, F, (0, 80, 100)),
    Label("motorcycle", 32, 17, "vehicle", 7, T, F, (0, 0, 230)),
    Label("bicycle", 33, 18, "vehicle", 7, T, F, (119, 11, 32)),
    Label("license plate", -1, -1, "vehicle", 7, F, T, (0, 0, 142)),
)
del F, T

BY_ID: dict[int, Label] = {lab.id: lab for lab in LABELS}
BY_NAME: dict[str, Label] = {lab.name: lab for lab in LABELS}
# Classes whose instanceIds pixels carry id*1000+k (person .. bicycle).
INSTANCE_CLASS_IDS: frozenset[int] = frozenset(lab.id for lab in LABELS if lab.hasInstances)
# The 8 classes of the instance-level benchmark (trainIds 11..18).
EVAL_INSTANCE_CLASS_IDS: frozenset[int] = frozenset(
    lab.id for lab in LABELS if lab.hasInstances and not lab.ignoreInEval)


def id_to_train_id_lut(unknown: int = IGNORE_TRAIN_ID) -> list[int]:
    """256 entries: label id -> trainId (255 ignore); ids outside the table -> ``unknown``.

    This is the mapping ``createTrainIdLabelImgs.py`` applies (it draws the
    trainId of each polygon in the same order as the labelIds were drawn, so
    mapping labelIds pixel by pixel gives the same image).

    Example:
        >>> id_to_train_id_lut()[26]
        13
    """
    lut = [unknown] * 256
    for lab in LABELS:
        if 0 <= lab.id < 256:
            lut[lab.id] = lab.trainId if lab.trainId >= 0 else IGNORE_TRAIN_ID
    return lut


def train_id_to_id_lut(unknown: int = 0) -> list[int]:
    """256 entries: trainId -> label id, the first label of a trainId winning.

    trainId 255 -> 0 (unlabeled); values outside the table (datumaro writes 19
    for its background) -> ``unknown`` (0, unlabeled, ignored in evaluation).

    Example:
        >>> train_id_to_id_lut()[13], train_id_to_id_lut()[255]
        (26, 0)
    """
    lut = [unknown] * 256
    for lab in reversed(LABELS):
        if 0 <= lab.trainId < 256:
            lut[lab.trainId] = lab.id
    return lut
