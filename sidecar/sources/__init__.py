"""Sources turn the outside world (files, flags, Docker) into store fragments. They never
answer queries."""
