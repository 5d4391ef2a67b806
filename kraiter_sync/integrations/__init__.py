"""kraiter-sync where pipelines already run: a dlt destination and Dagster, Airflow and
Prefect adapters.

Each adapter is a thin layer over :mod:`kraiter_sync.integrations.runs` (one import run,
its counts, the exit-code semantics) and imports its library only when its module is
imported, so none of them is needed by the base install (extras ``dlt``, ``dagster``,
``prefect``, ``airflow``). This package imports nothing on its own.
"""
