"""The flush: spooled requests normalized, deduplicated and written to the lake, once each."""
