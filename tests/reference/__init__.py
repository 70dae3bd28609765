"""Independent reference implementations the tests (and the bench) check the engine against."""
