"""`python -m bench`: the scheduling-engine benchmark (see bench/engine.py and bench/README.md).

The core benchmark stays `python -m bench.core`.
"""

from bench.engine import main

if __name__ == "__main__":
    main()
