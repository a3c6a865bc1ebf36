"""One module per ``dsprep`` sub-command (see :mod:`dsprep.cli`)."""
