"""Placeholder: this format is being written (see the open issues)."""
NAME = "cityscapes"
DESCRIPTION = "(not implemented yet)"


def detect(path) -> bool:
    raise NotImplementedError


def parse(path, **options):
    raise NotImplementedError("the cityscapes format is not implemented yet")


def write(dataset, dest, **options):
    raise NotImplementedError("the cityscapes format is not implemented yet")
