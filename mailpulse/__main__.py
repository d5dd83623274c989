"""``python -m mailpulse`` runs the command line."""

from mailpulse.cli import main

main()
