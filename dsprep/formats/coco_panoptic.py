"""Placeholder: this format is being written (see the open issues)."""
NAME = "coco-panoptic"
DESCRIPTION = "(not implemented yet)"


def detect(path) -> bool:
    raise NotImplementedError


def parse(path, **options):
    raise NotImplementedError("the coco_panoptic format is not implemented yet")


def write(dataset, dest, **options):
    raise NotImplementedError("the coco_panoptic format is not implemented yet")
