"""`python -m meshguard_gateway` is the `meshguard` command."""

from meshguard_gateway.cli import main

if __name__ == "__main__":
    main()
