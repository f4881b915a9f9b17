"""Helpers of the reliability and security suites: fault servers, the AutoGPT driver, figures."""
