"""A small Django project for the jobworker backend's tests: its databases come from the
environment the tests set, so the test process and the worker processes it starts agree."""
