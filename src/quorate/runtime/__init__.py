"""Runtimes that carry out what protocol cores ask: ``sim`` (deterministic
simulator) and ``aio`` (real asyncio nodes). Both use ``driver.drive``."""
