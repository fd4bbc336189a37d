"""`python -m bench [--quick] [--skip ...]`: see bench/__init__.py."""

from bench.runner import cli

if __name__ == "__main__":
    cli()
