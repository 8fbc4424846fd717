"""In-process fakes of servers that cannot run on a test machine."""
