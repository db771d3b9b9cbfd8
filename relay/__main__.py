"""`python -m relay` runs the same CLI as the `relay` console script."""

from relay.cli import main

if __name__ == "__main__":
    main()
