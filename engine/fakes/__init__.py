"""Fake STORIS and fake Klaviyo servers, for tests and demo mode.

    engine.fakes.klaviyo.create_app(keys=..., limits=..., lists=...)       python -m engine.fakes.klaviyo
    engine.fakes.storis.create_app(records_dir=..., client_id=..., ...)    python -m engine.fakes.storis

Both are Starlette apps with relative routes, so they run standalone or mounted (demo mode mounts them at
/fake/klaviyo and /fake/storis). The submodules are not imported here, so ``python -m`` runs them cleanly.
"""
