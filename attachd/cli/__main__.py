"""`python -m attachd.cli`, as the console script."""

from attachd.cli import main

main()
