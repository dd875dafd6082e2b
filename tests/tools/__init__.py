"""The developer tools behind ``make demo``, ``make playground``, ``make cluster`` and ``make screenshots``.

They build on :mod:`tests.support` (services, Airflow processes); tests may import them, test
support never does.
"""
