"""aspen package."""
