"""Stand-in for forge (jrmatherly/AutoGPT dac99694f, classic/forge/forge/): the pieces classic AutoGPT's
dispatcher uses. Only what shapes the dispatch is kept."""
