"""``python -m swiftzarr_batch.cli`` is the ``swiftzarr`` command."""

from swiftzarr_batch.cli.main import main

main()
