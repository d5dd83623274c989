"""Benchmarks for mailpulse (see BENCHMARKS.md); a package so gunicorn can import the apps."""
