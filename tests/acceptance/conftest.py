"""The acceptance harness lives in ``tests/support/acceptance.py`` (a plugin of the root conftest), so the attack
suite (``tests/attack``) shares its one server per session."""
