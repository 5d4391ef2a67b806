"""``python -m kraiter_sync`` runs the command line."""

from kraiter_sync.cli import main

main(prog_name="kraiter-sync")
