"""Protocol-faithful simulated devices for tests and demos (see simulators/base.py)."""
