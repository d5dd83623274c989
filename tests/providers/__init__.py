"""Tests of the provider modules, one file per ESP."""
