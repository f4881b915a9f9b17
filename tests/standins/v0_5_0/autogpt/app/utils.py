"""Mirrors autogpt/app/utils.py at v0.5.0: @coroutine runs an async function with asyncio.run."""

import asyncio
import functools


def coroutine(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return asyncio.run(f(*args, **kwargs))

    return wrapper
