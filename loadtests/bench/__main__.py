"""`python -m loadtests.bench` (from the repository's root): see loadtests/bench/run.py."""

from loadtests.bench.run import main

raise SystemExit(main())
