"""Dev doubles: the scripted Messages-API server (tests, and `dev` without an API key) and fault
points (armed only by tests). They import nothing of ours, and no production path imports them
but `dev`'s offline model."""
