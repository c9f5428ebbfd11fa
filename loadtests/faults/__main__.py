"""`python -m loadtests.faults` (from the repository's root): see loadtests/faults/run.py."""

from loadtests.faults.run import main

raise SystemExit(main())
