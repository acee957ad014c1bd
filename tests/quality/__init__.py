"""Quality-stage tests (a package, so their helpers and conftest do not shadow the top-level ones)."""
