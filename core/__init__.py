"""The foundation: settings, errors, logging, the domain's types, content rules and the clamd
client. It imports nothing else of attachd's; everything else stands on it."""

from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """attachd's installed version (the API's version route and the OpenAPI document)."""
    try:
        return version("attachd")
    except PackageNotFoundError:
        return "0+unknown"
