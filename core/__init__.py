"""Types every layer shares: departments, conversation turns, routes, messages."""
